import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import * as tfl from '@tensorflow/tfjs-layers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { convertExport, createEncoder, readShardIndex, type FrameEncoder } from '../../src/index.js';
import { encodeVideo } from '../../src/features/video.js';
import { writeSampleExport } from '../../src/demo/sample-export.js';
import { readShard } from '../../src/shard/read.js';
import { GRAPH_SIZE, referenceFeatures, writeGraphModel } from './graph-model.js';

let dir: string;

/** Save a layers model the way tfjs does (model.json + weight shards), here in two shards. */
async function saveLayersModel(model: tfl.LayersModel, folder: string): Promise<void> {
  await fs.mkdir(folder, { recursive: true });
  await model.save(
    tf.io.withSaveHandler(async (artifacts) => {
      const wd = artifacts.weightData!;
      const bytes = Array.isArray(wd) ? Buffer.concat(wd.map((b) => Buffer.from(b))) : Buffer.from(wd);
      const half = bytes.length >> 1;
      await fs.writeFile(path.join(folder, 'group1-shard1of2.bin'), bytes.subarray(0, half));
      await fs.writeFile(path.join(folder, 'group1-shard2of2.bin'), bytes.subarray(half));
      const json = {
        format: artifacts.format,
        generatedBy: artifacts.generatedBy,
        convertedBy: null,
        modelTopology: artifacts.modelTopology,
        weightsManifest: [{ paths: ['group1-shard1of2.bin', 'group1-shard2of2.bin'], weights: artifacts.weightSpecs }],
      };
      await fs.writeFile(path.join(folder, 'model.json'), JSON.stringify(json));
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
    }),
  );
}

/** A frame of one colour. */
function solid(size: number, [r, g, b]: number[]): Uint8Array {
  const f = new Uint8Array(size * size * 3);
  for (let i = 0; i < f.length; i += 3) {
    f[i] = r!;
    f[i + 1] = g!;
    f[i + 2] = b!;
  }
  return f;
}

/** A frame with a gradient, so every pixel differs. */
function gradient(size: number, seed: number): Uint8Array {
  const f = new Uint8Array(size * size * 3);
  for (let i = 0; i < f.length; i++) f[i] = (i * 7 + seed * 31) % 256;
  return f;
}

const W = [
  [0.5, -1, 2, 0, 0.25],
  [1, 0.5, -0.5, 3, 0],
  [-2, 1, 0, 1, -0.75],
];
const B = [0.1, -0.2, 0.3, 0, 1];
const MEAN = [0.5, 0.25, 0];
const STD = [0.5, 0.5, 2];

beforeAll(async () => {
  await tf.setBackend('cpu');
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'rpv-tfjs-'));
  // Pooled: [n, 8, 8, 3] -> mean over pixels -> Dense(5): one token of 5 per frame.
  const pooled = tfl.sequential({
    layers: [tfl.layers.globalAveragePooling2d({ inputShape: [8, 8, 3] }), tfl.layers.dense({ units: 5 })],
  });
  pooled.layers[1]!.setWeights([tf.tensor2d(W), tf.tensor1d(B)]);
  await saveLayersModel(pooled, path.join(dir, 'pooled'));
  await fs.writeFile(path.join(dir, 'pooled', 'rpv-encoder.json'), JSON.stringify({ mean: MEAN, std: STD }));
  // Tokens: [n, 4, 4, 3] -> 16 pixel tokens -> Dense(2) on each: [n, 16, 2].
  const tokens = tfl.sequential({
    layers: [tfl.layers.reshape({ inputShape: [4, 4, 3], targetShape: [16, 3] }), tfl.layers.dense({ units: 2, useBias: false })],
  });
  tokens.layers[1]!.setWeights([tf.tensor2d([[1, 0], [0, 1], [1, -1]])]);
  await saveLayersModel(tokens, path.join(dir, 'tokens'));
  // Channels first: [n, 3, 4, 4] -> flatten (channel-major) -> Dense(2): mean of R, mean of B.
  const nchw = tfl.sequential({ layers: [tfl.layers.flatten({ inputShape: [3, 4, 4] }), tfl.layers.dense({ units: 2, useBias: false })] });
  const pick = Array.from({ length: 48 }, (_, k) => [k < 16 ? 1 / 16 : 0, k >= 32 ? 1 / 16 : 0]);
  nchw.layers[1]!.setWeights([tf.tensor2d(pick)]);
  await saveLayersModel(nchw, path.join(dir, 'nchw'));
  // A graph model written by hand in the converter's format: Mean over H, W then MatMul.
  const graph = path.join(dir, 'graph');
  await fs.mkdir(graph);
  const modelJson = {
    format: 'graph-model',
    generatedBy: 'hand',
    convertedBy: 'rpv test',
    modelTopology: {
      node: [
        { name: 'frames', op: 'Placeholder', attr: { dtype: { type: 'DT_FLOAT' }, shape: { shape: { dim: [{ size: '-1' }, { size: '-1' }, { size: '-1' }, { size: '3' }] } } } },
        { name: 'axes', op: 'Const', attr: { dtype: { type: 'DT_INT32' }, value: { tensor: { dtype: 'DT_INT32', tensorShape: { dim: [{ size: '2' }] } } } } },
        { name: 'pooled', op: 'Mean', input: ['frames', 'axes'], attr: { keep_dims: { b: false }, T: { type: 'DT_FLOAT' }, Tidx: { type: 'DT_INT32' } } },
        { name: 'w', op: 'Const', attr: { dtype: { type: 'DT_FLOAT' }, value: { tensor: { dtype: 'DT_FLOAT', tensorShape: { dim: [{ size: '3' }, { size: '5' }] } } } } },
        { name: 'features', op: 'MatMul', input: ['pooled', 'w'], attr: { T: { type: 'DT_FLOAT' }, transpose_a: { b: false }, transpose_b: { b: false } } },
      ],
      versions: { producer: 1 },
    },
    weightsManifest: [{ paths: ['group1-shard1of1.bin'], weights: [{ name: 'axes', shape: [2], dtype: 'int32' }, { name: 'w', shape: [3, 5], dtype: 'float32' }] }],
  };
  await fs.writeFile(path.join(graph, 'model.json'), JSON.stringify(modelJson));
  const weights = Buffer.concat([Buffer.from(new Int32Array([1, 2]).buffer), Buffer.from(new Float32Array(W.flat()).buffer)]);
  await fs.writeFile(path.join(graph, 'group1-shard1of1.bin'), weights);
});

afterAll(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

/** mean over pixels of normalised RGB, times W, plus b (if given). */
function expectedPooled(frame: Uint8Array, mean = [0, 0, 0], std = [1, 1, 1], bias?: number[]): number[] {
  const m = [0, 0, 0];
  for (let i = 0; i < frame.length; i++) m[i % 3]! += (frame[i]! / 255 - mean[i % 3]!) / std[i % 3]!;
  const n = frame.length / 3;
  return W[0]!.map((_, j) => m.reduce((s, v, c) => s + (v / n) * W[c]![j]!, bias ? bias[j]! : 0));
}

describe('tfjs encoder', () => {
  it('loads a layers model from a folder and computes its features, batched', async () => {
    const enc = await createEncoder(`tfjs:${path.join(dir, 'pooled')}`, { batchSize: 2 });
    expect([enc.tokensPerFrame, enc.featureDim]).toEqual([1, 5]);
    expect(enc.id).toMatch(/^tfjs:pooled@[0-9a-f]{12}\+[0-9a-f]{6}$/);
    expect(enc.describe()).toMatchObject({ kind: 'tfjs', format: 'layers-model', inputLayout: 'NHWC', mean: MEAN, std: STD });
    const frames = [gradient(8, 1), gradient(8, 2), solid(8, [255, 0, 0]), gradient(8, 3), solid(8, [10, 200, 30])];
    const before = tf.memory().numTensors;
    const out = await enc.encode(frames, 8);
    expect(tf.memory().numTensors).toBe(before);
    expect(out).toHaveLength(5 * 5);
    frames.forEach((f, i) => {
      const want = expectedPooled(f, MEAN, STD, B);
      for (let j = 0; j < 5; j++) expect(out[i * 5 + j]).toBeCloseTo(want[j]!, 4);
    });
    // Frames of another size are resized to the model's 8x8 input: a uniform frame stays uniform.
    const big = await enc.encode([solid(20, [10, 200, 30])], 20);
    for (let j = 0; j < 5; j++) expect(big[j]).toBeCloseTo(out[4 * 5 + j]!, 4);
    enc.dispose?.();
  });

  it('keeps a [frames, tokens, dim] output as tokens', async () => {
    const enc = await createEncoder(`tfjs:${path.join(dir, 'tokens')}`);
    expect([enc.tokensPerFrame, enc.featureDim]).toEqual([16, 2]);
    const f = gradient(4, 5);
    const out = await enc.encode([f], 4);
    for (let p = 0; p < 16; p++) {
      const [r, g, b] = [f[p * 3]! / 255, f[p * 3 + 1]! / 255, f[p * 3 + 2]! / 255];
      expect(out[p * 2]).toBeCloseTo(r + b, 5);
      expect(out[p * 2 + 1]).toBeCloseTo(g - b, 5);
    }
  });

  it('feeds channels-first models NCHW', async () => {
    const enc = await createEncoder(`tfjs:${path.join(dir, 'nchw')}`);
    expect(enc.describe()).toMatchObject({ inputLayout: 'NCHW', featureDim: 2, tokensPerFrame: 1 });
    const out = await enc.encode([solid(4, [255, 0, 0]), solid(4, [0, 255, 51])], 4);
    expect(Array.from(out).map((v) => Math.round(v * 1000) / 1000)).toEqual([1, 0, 0, 0.2]);
  });

  it('loads a graph model (converter format) and runs it', async () => {
    const enc = await createEncoder(`tfjs:${path.join(dir, 'graph')}`);
    expect(enc.describe()).toMatchObject({ format: 'graph-model', featureDim: 5, tokensPerFrame: 1, spec: `tfjs:${path.join(dir, 'graph')}` });
    expect(enc.id).toMatch(/^tfjs:graph@[0-9a-f]{12}$/);
    const frames = [gradient(12, 7), solid(12, [0, 0, 255])];
    const out = await enc.encode(frames, 12);
    frames.forEach((f, i) => {
      const want = expectedPooled(f);
      for (let j = 0; j < 5; j++) expect(out[i * 5 + j]).toBeCloseTo(want[j]!, 4);
    });
  });

  it('says what is wrong with a bad folder', async () => {
    const empty = path.join(dir, 'empty');
    await fs.mkdir(empty);
    await expect(createEncoder(`tfjs:${empty}`)).rejects.toThrow(`encoder tfjs:${empty}: no model.json in the folder`);
    const broken = path.join(dir, 'broken');
    await fs.mkdir(broken);
    await fs.copyFile(path.join(dir, 'pooled', 'model.json'), path.join(broken, 'model.json'));
    await fs.copyFile(path.join(dir, 'pooled', 'group1-shard1of2.bin'), path.join(broken, 'group1-shard1of2.bin'));
    await expect(createEncoder(`tfjs:${broken}`)).rejects.toThrow(`encoder tfjs:${broken}: weight file group1-shard2of2.bin listed in model.json cannot be read (ENOENT)`);
    await expect(createEncoder('clip')).rejects.toThrow('unknown encoder "clip": expected "grid", "grid:cells=N[,tokens=frame|cell]", "tfjs:<folder>" or "hf:<folder>[#key=value,...]"');
  });
});

describe('a graph model whose input fixes the batch', () => {
  const fixture = path.resolve(import.meta.dirname, '../fixtures/tfjs-batch1');
  const frames = [gradient(GRAPH_SIZE, 1), solid(GRAPH_SIZE, [255, 0, 0]), gradient(GRAPH_SIZE, 2), gradient(GRAPH_SIZE, 3), solid(GRAPH_SIZE, [10, 200, 30])];
  const expectReference = (out: Float32Array, input: Uint8Array[]) => {
    expect(out).toHaveLength(input.length * 6);
    input.forEach((f, i) => {
      const want = referenceFeatures(f);
      for (let j = 0; j < 6; j++) expect(out[i * 6 + j]).toBeCloseTo(want[j]!, 5);
    });
  };

  it('the fixture is what graph-model.ts writes', async () => {
    const fresh = path.join(dir, 'batch1-fresh');
    await writeGraphModel(fresh, 1);
    for (const file of ['model.json', 'group1-shard1of1.bin']) {
      expect((await fs.readFile(path.join(fresh, file))).equals(await fs.readFile(path.join(fixture, file))), file).toBe(true);
    }
  });

  it('batch 1: frames run one by one and give the per-frame results', async () => {
    const enc = await createEncoder(`tfjs:${fixture}`, { batchSize: 4 });
    expect(enc.describe()).toMatchObject({ format: 'graph-model', featureDim: 6, tokensPerFrame: 1, batchSize: 1, fixedBatch: 1 });
    const before = tf.memory().numTensors;
    expectReference(await enc.encode(frames, GRAPH_SIZE), frames);
    expect(tf.memory().numTensors).toBe(before);
    enc.dispose?.();
  });

  it('batch 2: an odd number of frames, the last batch padded, gives the per-frame results', async () => {
    const folder = path.join(dir, 'batch2');
    await writeGraphModel(folder, 2);
    const enc = await createEncoder(`tfjs:${folder}`);
    expect(enc.describe()).toMatchObject({ batchSize: 2, fixedBatch: 2 });
    expectReference(await enc.encode(frames, GRAPH_SIZE), frames);
    expectReference(await enc.encode([frames[4]!], GRAPH_SIZE), [frames[4]!]);
    enc.dispose?.();
  });

  it('rpv convert --encoder tfjs:<batch-1 model>: the shards hold the per-frame results of the sampled frames', async () => {
    const exportDir = path.join(dir, 'export');
    await writeSampleExport(exportDir, { clips: 2, dialoguesPerClip: 2, seed: 5 });
    const out = path.join(dir, 'converted');
    const summary = await convertExport({ input: exportDir, out, encoder: `tfjs:${fixture}`, frameSize: GRAPH_SIZE, dtype: 'float32', workers: 1 });
    expect(summary.counts).toMatchObject({ read: 2, converted: 2, skipped: 0 });
    const index = await readShardIndex(out);
    expect(index.encoder).toMatchObject({ fixedBatch: 1, featureDim: 6 });
    // The same frames decoded again, each encoded by the float64 reference on its own.
    const reference: FrameEncoder = {
      id: 'reference',
      featureDim: 6,
      tokensPerFrame: 1,
      encode: async (input) => Float32Array.from(input.flatMap((f) => referenceFeatures(f))),
      describe: () => ({ id: 'reference', kind: 'test', featureDim: 6, tokensPerFrame: 1 }),
    };
    const records = (await fs.readFile(path.join(exportDir, 'annotations.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l));
    const rows = (await Promise.all(index.shards.filter((s) => s.format === 'arrow').map((s) => readShard(path.join(out, s.file))))).flat();
    expect(rows).toHaveLength(2);
    for (const row of rows) {
      const record = records.find((r) => r.id === row.video_id)!;
      const want = await encodeVideo(path.join(exportDir, record.video), { encoder: reference, frameSize: GRAPH_SIZE, sampling: index.sampling });
      expect(row.num_frames).toBe(want.numFrames);
      expect(row.num_frames).toBeGreaterThan(1);
      for (let i = 0; i < want.features.length; i++) expect(row.frames[i]).toBeCloseTo(want.features[i]!, 5);
    }
  });
});
