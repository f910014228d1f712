/**
 * A tiny TensorFlow.js graph model written by hand in tensorflowjs_converter's format (model.json
 * with a GraphDef in JSON, one weight file), whose input fixes the batch as converted models often
 * do: image [batch, 16, 16, 3] -> Conv2D 3x3, stride 2, SAME, 4 filters -> BiasAdd -> Relu -> Mean
 * over H and W -> MatMul 4x6: one token of 6 values per frame.
 *
 * test/fixtures/tfjs-batch1 holds it with batch 1; the test checks those files are what
 * `writeGraphModel(folder, 1)` writes. Rewrite them with
 *   npx tsx test/features/graph-model.ts test/fixtures/tfjs-batch1
 * `referenceFeatures` computes the same function in plain float64 JavaScript.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';

export const GRAPH_SIZE = 16;
const FILTERS = 4;
const DIM = 6;

/** Deterministic weights, multiples of 1/64 in [-1, 1] (exact in float32). */
export function graphWeights(): { conv: Float32Array; bias: Float32Array; proj: Float32Array } {
  let state = 20240611;
  const next = () => {
    state = (state * 1103515245 + 12345) % 2 ** 31;
    return (((state >>> 8) % 129) - 64) / 64;
  };
  const fill = (n: number) => Float32Array.from({ length: n }, next);
  // conv: [kh, kw, in, out] as TensorFlow stores Conv2D filters.
  return { conv: fill(3 * 3 * 3 * FILTERS), bias: fill(FILTERS), proj: fill(FILTERS * DIM) };
}

const ascii64 = (s: string) => Buffer.from(s).toString('base64');
const dims = (shape: number[]) => ({ dim: shape.map((d) => ({ size: String(d) })) });
const constNode = (name: string, dtype: 'DT_FLOAT' | 'DT_INT32', shape: number[]) => ({
  name,
  op: 'Const',
  attr: { dtype: { type: dtype }, value: { tensor: { dtype, tensorShape: dims(shape) } } },
});

/** model.json of the model with input batch `batch`. */
export function graphModelJson(batch: number): Record<string, unknown> {
  const float = { type: 'DT_FLOAT' };
  return {
    format: 'graph-model',
    generatedBy: 'hand-written',
    convertedBy: 'rpv test/features/graph-model.ts',
    modelTopology: {
      node: [
        { name: 'image', op: 'Placeholder', attr: { dtype: float, shape: { shape: dims([batch, GRAPH_SIZE, GRAPH_SIZE, 3]) } } },
        constNode('conv/kernel', 'DT_FLOAT', [3, 3, 3, FILTERS]),
        {
          name: 'conv/Conv2D',
          op: 'Conv2D',
          input: ['image', 'conv/kernel'],
          attr: {
            T: float,
            strides: { list: { i: ['1', '2', '2', '1'] } },
            padding: { s: ascii64('SAME') },
            data_format: { s: ascii64('NHWC') },
            dilations: { list: { i: ['1', '1', '1', '1'] } },
            use_cudnn_on_gpu: { b: true },
          },
        },
        constNode('conv/bias', 'DT_FLOAT', [FILTERS]),
        { name: 'conv/BiasAdd', op: 'BiasAdd', input: ['conv/Conv2D', 'conv/bias'], attr: { T: float, data_format: { s: ascii64('NHWC') } } },
        { name: 'conv/Relu', op: 'Relu', input: ['conv/BiasAdd'], attr: { T: float } },
        constNode('pool/axes', 'DT_INT32', [2]),
        { name: 'pool/Mean', op: 'Mean', input: ['conv/Relu', 'pool/axes'], attr: { T: float, Tidx: { type: 'DT_INT32' }, keep_dims: { b: false } } },
        constNode('proj/kernel', 'DT_FLOAT', [FILTERS, DIM]),
        { name: 'features', op: 'MatMul', input: ['pool/Mean', 'proj/kernel'], attr: { T: float, transpose_a: { b: false }, transpose_b: { b: false } } },
      ],
      library: {},
      versions: { producer: 1286 },
    },
    weightsManifest: [
      {
        paths: ['group1-shard1of1.bin'],
        weights: [
          { name: 'conv/kernel', shape: [3, 3, 3, FILTERS], dtype: 'float32' },
          { name: 'conv/bias', shape: [FILTERS], dtype: 'float32' },
          { name: 'pool/axes', shape: [2], dtype: 'int32' },
          { name: 'proj/kernel', shape: [FILTERS, DIM], dtype: 'float32' },
        ],
      },
    ],
  };
}

/** Write model.json and its weight file into `folder`. */
export async function writeGraphModel(folder: string, batch: number): Promise<void> {
  const w = graphWeights();
  await fs.mkdir(folder, { recursive: true });
  await fs.writeFile(path.join(folder, 'model.json'), `${JSON.stringify(graphModelJson(batch), null, 1)}\n`);
  const bin = Buffer.concat([w.conv, w.bias, Int32Array.of(1, 2), w.proj].map((a) => Buffer.from(a.buffer, a.byteOffset, a.byteLength)));
  await fs.writeFile(path.join(folder, 'group1-shard1of1.bin'), bin);
}

/** The model's output for one RGB24 frame of GRAPH_SIZE x GRAPH_SIZE (input rgb / 255), in float64. */
export function referenceFeatures(frame: Uint8Array): number[] {
  const { conv, bias, proj } = graphWeights();
  const S = GRAPH_SIZE;
  const out = S / 2;
  // SAME with stride 2 on an even size: TensorFlow pads 0 before and 1 after.
  const pooled = new Array<number>(FILTERS).fill(0);
  for (let oy = 0; oy < out; oy++) {
    for (let ox = 0; ox < out; ox++) {
      for (let f = 0; f < FILTERS; f++) {
        let acc = bias[f]!;
        for (let ky = 0; ky < 3; ky++) {
          for (let kx = 0; kx < 3; kx++) {
            const y = oy * 2 + ky;
            const x = ox * 2 + kx;
            if (y >= S || x >= S) continue;
            for (let c = 0; c < 3; c++) acc += (frame[(y * S + x) * 3 + c]! / 255) * conv[((ky * 3 + kx) * 3 + c) * FILTERS + f]!;
          }
        }
        pooled[f]! += Math.max(0, acc) / (out * out);
      }
    }
  }
  return Array.from({ length: DIM }, (_, j) => pooled.reduce((s, v, f) => s + v * proj[f * DIM + j]!, 0));
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const folder = process.argv[2];
  if (!folder) throw new Error('usage: npx tsx test/features/graph-model.ts <folder>');
  await writeGraphModel(folder, 1);
}
