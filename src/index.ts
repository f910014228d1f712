/**
 * rpv's public API. An explicit list of named exports, one block per stage of the pipeline;
 * the CLI (`src/cli.ts`) is a thin layer over these.
 */
export { RpvError } from './util/errors.js';
export { Progress } from './util/progress.js';

// Shards: schema and index types
export { SHARD_COLUMNS, SHARD_FORMAT_NAME, SHARD_FORMAT_VERSION } from './shard/schema.js';
export type {
  Dialogue,
  FeatureDType,
  FeatureSchema,
  SamplingSettings,
  ShardEntry,
  ShardFileFormat,
  ShardIndex,
  SkipRecord,
  Turn,
  VideoRow,
} from './shard/schema.js';

// Media: ffmpeg, sampling, frame extraction
export { describeFfmpeg, resolveFfmpeg } from './media/ffmpeg.js';
export type { BinaryInfo, FfmpegDescription, FfmpegPaths, FfmpegSource } from './media/ffmpeg.js';
export { MediaError, MEDIA_ERROR_REASONS, probeVideo } from './media/probe.js';
export type { MediaErrorReason, ProbeOptions, VideoInfo } from './media/probe.js';
export { DEFAULT_SAMPLING, sampleFrameCount, sampleFrameTimes, validateSampling } from './media/sampling.js';
export type { SamplingOptions } from './media/sampling.js';
export { buildExtractArgs, extractFrames, extractImage } from './media/extract.js';
export type { BuildExtractArgsOptions, ExtractOptions } from './media/extract.js';
export { planSampleExport, writeSampleExport } from './demo/sample-export.js';
export type { SampleClip, SampleExportOptions, SampleExportSummary, SampleRecord } from './demo/sample-export.js';
export { VISUAL_WORDS } from './demo/sample-dialogues.js';

// Features: encoders
export { createEncoder, DEFAULT_ENCODER_SPEC } from './features/encoder.js';
export type { CreateEncoderOptions, EncoderDescription, FrameEncoder } from './features/encoder.js';
export { GridEncoder } from './features/grid.js';
export type { GridEncoderOptions } from './features/grid.js';
export { FeaturesError, readPrecomputedFeatures } from './features/precomputed.js';
export type { PrecomputedFeatures } from './features/precomputed.js';
export { encodeVideo, IMAGE_EXTENSIONS } from './features/video.js';
export type { EncodedVideo, EncodeVideoOptions } from './features/video.js';

// Shards and datasets (read, write, index, merge, inspect); convert: input formats, converter
export { readShard, decodeShardRows, shardFormatOf } from './shard/read.js';
export type { ReadShardOptions } from './shard/read.js';
export { ShardWriter, encodeShard, writeShardFile, DEFAULT_MAX_SHARD_BYTES } from './shard/write.js';
export type { EncodeShardOptions, FinishedShard, ParquetCompression, ShardWriterOptions } from './shard/write.js';
export { readShardIndex, writeShardIndex, validateShardIndex, indexLocation } from './shard/index-file.js';
export { float16ToFloat32, float32ToFloat16 } from './util/float16.js';
export { convertExport } from './convert/convert.js';
export type { ConvertOptions, ConvertSummary, OutputFormat } from './convert/convert.js';
export { mergeDatasets } from './shard/merge.js';
export type { MergeDatasetsOptions, MergeDatasetsSummary } from './shard/merge.js';
export { inspectDataset } from './shard/inspect.js';
export type { InspectReport, ShardCheck } from './shard/inspect.js';
export { INPUT_FORMATS, detectInputFormat, getInputFormat } from './convert/formats/index.js';
export type { InputFormat, InputFormatName, ParsedItem, SourceRecord } from './convert/record.js';
export { mmroleFormat, parseMmrolePrompt, readMmroleProfiles } from './convert/formats/mmrole.js';
export type { MmrolePrompt, MmroleReadOptions } from './convert/formats/mmrole.js';
export { chatharuhiFormat, parseSpeakerLine } from './convert/formats/chatharuhi.js';
export { rolebenchFormat, readRolebenchProfiles } from './convert/formats/rolebench.js';

// Loader
export {
  createLoader,
  Loader,
  collate,
  epochOrder,
  planRank,
  validateLoaderState,
  defaultCacheDir,
  DEFAULT_PREFETCH_BYTES,
  DEFAULT_CACHE_LIMIT_BYTES,
  LOADER_STATE_FORMAT,
  LOADER_STATE_VERSION,
} from './loader/index.js';
export type {
  Batch,
  CollateContext,
  DialogueSample,
  EpochOrder,
  LoaderInfo,
  LoaderOptions,
  LoaderState,
  LoaderStats,
  RankPlan,
  RetryOptions,
  Sample,
} from './loader/index.js';

// Model
export { initBackend, describeBackend, BACKEND_NAMES } from './model/backend.js';
export type { BackendInfo, BackendName, BackendRoute, InitBackendOptions, NativeMatmulStatus } from './model/backend.js';
export type { WebgpuAdapterInfo, WebgpuInfo, WebgpuProbe } from './model/webgpu.js';
export { parseConfig, readConfig, SUPPORTED_ARCHITECTURES } from './model/config.js';
export type { Architecture, DecoderConfig } from './model/config.js';
export { loadModel, VIDEO_PLACEHOLDERS } from './model/load.js';
export type { LoadModelOptions } from './model/load.js';
export { CausalLM, KvCache, IGNORE_INDEX } from './model/decoder.js';
export type { ForwardInput, ForwardOptions, LossResult, VideoInput } from './model/decoder.js';
export { ChatTokenizer } from './model/tokenizer.js';
export type { ChatMessage, EncodedChat, MessageSpan } from './model/tokenizer.js';
export { DEFAULT_LORA, LORA_MODULES, loraScaling } from './model/lora.js';
export type { LoraConfig, LoraModule } from './model/lora.js';
export type { ProjectorConfig } from './model/projector.js';
export { saveAdapter, loadAdapter, saveProjector, loadProjector, peftAdapterConfig, parseAdapterConfig } from './model/adapter.js';
export { mergeLora } from './model/merge.js';
export type { MergeSummary } from './model/merge.js';
export { scoreText } from './model/score.js';
export type { ScoreOptions, ScoreResult } from './model/score.js';
export { writeTinyModel, tinyModelTensors, MODEL_PRESETS, TINY_SPECIAL_TOKENS } from './model/tiny.js';
export type { TinyModelOptions, ModelPreset } from './model/tiny.js';
export { readSafetensors, writeSafetensors, encodeSafetensors, decodeSafetensors, SafetensorsReader } from './util/safetensors.js';
export type { SafetensorsFile, SafetensorsTensor, SafetensorsInput, SafetensorsDType } from './util/safetensors.js';

// Native matmul
export {
  describeNativeMatmul,
  installNativeMatmul,
  nativeMatmulStats,
  uninstallNativeMatmul,
} from './native/matmul.js';
export type { InstallNativeMatmulOptions, NativeMatmulInfo, NativeMatmulStats } from './native/matmul.js';
export { sgemm } from './native/gemm.js';
export type { SgemmOptions } from './native/gemm.js';
export { loadNativeAddon } from './native/addon.js';
export type { FusedActivation, MatmulIsa } from './native/addon.js';

// Train
export { loadRecipe, parseRecipe, resolveRecipe, formatRecipe, recipeKeys, RECIPE_SCHEMA } from './train/recipe.js';
export type { Recipe } from './train/recipe.js';
export { lrAt, warmupStepsFor } from './train/schedule.js';
export type { ScheduleOptions } from './train/schedule.js';
export { AdamW, clipGradNorm, decays } from './train/adamw.js';
export type { AdamWOptions, AdamWState, Param } from './train/adamw.js';
export { Rng, hashString } from './util/random.js';
export type { RngState } from './util/random.js';
export { writeCheckpoint, readCheckpoint, resolveCheckpoint, listCheckpoints } from './train/checkpoint.js';
export type { CheckpointContents, TrainerState } from './train/checkpoint.js';
export { readMetrics } from './train/metrics.js';
export type { Metric, TrainMetric, EvalMetric } from './train/metrics.js';
export { plotRun, renderSvg } from './train/plot.js';
export { renderTrainingPrompt, renderGenerationPrompt, showLossMask } from './train/prompt.js';
export type { PromptTokenizer, RenderedPrompt } from './train/prompt.js';
export { isHeldOut, staticProfile } from './train/dataset.js';
export { train, openSession } from './train/trainer.js';
export type { TrainOptions, TrainResult } from './train/trainer.js';
export { dryRun } from './train/dry-run.js';
export { generateReply, loadForGeneration, videoFeatures, pickToken } from './infer/generate.js';
export { trainedProfile } from './infer/generation-profile.js';
export type { TrainedProfileOptions, ChosenProfile } from './infer/generation-profile.js';
export { TokenTextStream } from './infer/text-stream.js';
export type { GenerateReplyOptions, GeneratedReply, VideoFeatures } from './infer/generate.js';

// Eval
export {
  MMROLE_METRICS,
  VIDEO2ROLEPLAY_METRICS,
  METRIC_SETS,
  getMetricSet,
  parseJudgeScores,
  normalizeReviewText,
  scoreReview,
  summarizeScores,
  sequentialMean,
  readReviewFile,
  summarizeReviews,
  readAnswersFile,
  JudgeClient,
  JudgeGaveUpError,
  judgeApiKeyFromEnv,
  parseRetryAfter,
  JudgeCache,
  hashRequest,
  judgePromptText,
  judgeMessages,
  taskInstruction,
  judgeSamples,
  writeEvalReport,
  formatResultsCsv,
  formatReportCsv,
  formatPythonFloat,
  evaluateHeldOut,
} from './eval/index.js';
export type {
  JudgeMetric,
  MetricSet,
  MetricSetName,
  ScoreParse,
  JudgeOrder,
  OrderedScore,
  SampleMetricScore,
  ReviewFailure,
  MetricSummary,
  EvalSummary,
  ReviewFileItem,
  EvalSample,
  JudgeMessage,
  JudgeClientOptions,
  JudgeStats,
  JudgeRunOptions,
  JudgeRunResult,
  EvalReport,
  HeldOutOptions,
  HeldOutResult,
  HeldOutPerplexity,
} from './eval/index.js';
export {
  serveRatings,
  readRateItems,
  parseAnswersSource,
  RatingStore,
  RateSession,
  startRateServer,
  MediaResolver,
  exportRatings,
  readRatingsCsv,
  formatRatingsCsv,
  ratingsAgreement,
  krippendorffAlpha,
  alphaBootstrap,
  ALPHA_LEVELS,
  correlate,
  spearman,
  kendallTauB,
  averageRanks,
  compareJudgeWithHumans,
  readJudgeScores,
  parseJudgeSource,
  blindLabels,
  raterItemOrder,
} from './rate/index.js';
export type {
  ServeRatingsOptions,
  RatingsService,
  AnswersSource,
  RateItem,
  RateItems,
  StoredRating,
  NewRating,
  RatingRow,
  RatingsExport,
  AgreementOptions,
  MetricAgreement,
  AlphaLevel,
  AlphaResult,
  AlphaInterval,
  AlphaBootstrapOptions,
  RatingValue,
  Correlation,
  Comparison,
  MetricComparison,
  JudgeScores,
  JudgeSource,
  RateServerOptions,
  RateServer,
} from './rate/index.js';
