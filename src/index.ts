/**
 * rpv's public API: what a program builds on, one block per stage of the pipeline (the CLI in
 * `src/commands` is a thin layer over these). Each name is documented where it is declared; the
 * option types (`ConvertOptions`, `LoaderOptions`, `TrainOptions`, ...) say what every field does.
 * Everything else is internal and may change: import it from its module at your own risk.
 */
export { RpvError } from './util/errors.js';

// Shards: the dataset format (Arrow/Parquet files + index.json, see shards/README.md)
export { readShard } from './shard/read.js';
export { readShardRows } from './shard/source.js';
export type { ShardRowsOptions } from './shard/source.js';
export { ShardWriter } from './shard/write.js';
export { readShardIndex } from './shard/index-file.js';
export type { Dialogue, FeatureSchema, ShardIndex, Turn, VideoRow } from './shard/schema.js';
export { inspectDataset } from './shard/inspect.js';
export type { InspectReport } from './shard/inspect.js';
export { mergeDatasets } from './shard/merge.js';
export type { MergeDatasetsOptions, MergeDatasetsSummary } from './shard/merge.js';

// Media and features: probing, frame encoders
export { probeVideo } from './media/probe.js';
export type { VideoInfo } from './media/probe.js';
export { createEncoder } from './features/encoder.js';
export type { FrameEncoder } from './features/encoder.js';

// Vision towers: CLIP, SigLIP, InternViT from Hugging Face folders (behind `--encoder hf:`)
export { loadVisionTower, parseTowerSettings, writeTinyTower } from './vision/index.js';
export type { LoadVisionTowerOptions, TowerFamily, TowerSettings, VisionTower, WriteTinyTowerOptions } from './vision/index.js';

// Convert: raw exports to shards
export { convertExport } from './convert/convert.js';
export type { ConvertOptions, ConvertSummary } from './convert/convert.js';
export type { InputFormat } from './convert/record.js';

// Loader: shards to batches
export { collate, createLoader, Loader } from './loader/index.js';
export type { Batch, LoaderInfo, LoaderOptions, LoaderState, LoaderStats, Sample } from './loader/index.js';

// Model: the frozen decoder, LoRA, the video projector
export { initBackend } from './model/backend.js';
export type { BackendInfo, BackendName } from './model/backend.js';
export { loadModel } from './model/load.js';
export type { LoadModelOptions } from './model/load.js';
export { CausalLM } from './model/decoder.js';
export type { DecoderConfig } from './model/config.js';
export type { ForwardInput, ForwardOptions, LossResult, VideoInput } from './model/decoder.js';
export { ChatTokenizer } from './model/tokenizer.js';
export type { ChatMessage } from './model/tokenizer.js';
export type { LoraConfig, LoraPair } from './model/lora.js';
export type { ProjectorConfig } from './model/projector.js';
export { loadAdapter, loadInternVLProjector, loadProjector, saveAdapter } from './model/adapter.js';
export { mergeLora } from './model/merge.js';
export type { MergeSummary } from './model/merge.js';
export { scoreText } from './model/score.js';
export type { ScoreOptions, ScoreResult } from './model/score.js';
export { writeTinyModel } from './model/tiny.js';
export type { TinyModelOptions } from './model/tiny.js';
export { writeTinyInternVL } from './model/internvl-tiny.js';
export type { TinyInternVLOptions } from './model/internvl-tiny.js';
export { installNativeMatmul } from './native/matmul.js';

// Train
export { loadRecipe, parseRecipe } from './train/recipe.js';
export type { Recipe, RecipeInput } from './train/recipe.js';
export { dryRun } from './train/dry-run.js';
export { train } from './train/trainer.js';
export type { TrainOptions, TrainResult } from './train/trainer.js';
export { nativeScratchBytes, planMemory } from './train/memory.js';
export type { MemoryPlan, MemoryPlanInput, NativeScratchInput } from './train/memory.js';
export { readMetrics } from './train/metrics.js';
export type { EvalMetric, Metric, TrainMetric } from './train/metrics.js';
export { readCheckpoint } from './train/checkpoint.js';
export type { CheckpointContents } from './train/checkpoint.js';

// Inference
export { generateReply, loadForGeneration } from './infer/generate.js';
export type { GeneratedReply, GenerateReplyOptions, LoadedRun } from './infer/generate.js';

// Eval: held-out perplexity and the LLM judge
export { corpusBleu, evaluateHeldOut, getMetricSet, JudgeClient, judgeSamples, METRIC_SETS, readAnswersFile, rougeL, scoreReferences, writeEvalReport } from './eval/index.js';
export type { EvalReport, EvalSample, HeldOutOptions, HeldOutResult, JudgeClientOptions, JudgeRunOptions, JudgeRunResult, MetricSet, ReferenceScores } from './eval/index.js';

// Rate: human evaluation
export { compareJudgeWithHumans, exportRatings, ratingsAgreement, serveRatings } from './rate/index.js';
export type { Comparison, MetricAgreement, RatingsExport, RatingsService, ServeRatingsOptions } from './rate/index.js';

// The demo pipeline's sample export
export { writeSampleExport } from './demo/sample-export.js';
export type { SampleExportOptions, SampleExportSummary } from './demo/sample-export.js';
