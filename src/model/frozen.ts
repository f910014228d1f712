/**
 * The frozen base model's matrices behind two small interfaces, so the decoder is written once
 * for both places they can live:
 *   - tfjs tensors (any backend): weights decoded to float32 at load, linears stored transposed
 *     [in, out] so the forward is a plain matmul;
 *   - mapped (wasm backend with rpv's addon): weights stay in the memory-mapped safetensors files
 *     in their stored dtype (F32/F16/BF16) and are used there by native kernels (src/native/frozen.ts);
 *     nothing of the base enters the tfjs heap.
 * Both are untaped: the model calls them inside customGrad forwards and gradient functions, so
 * the gradient tape never holds a weight. LoRA needs only the input gradient of a frozen linear.
 */
import type * as tfc from '@tensorflow/tfjs-core';
import { mappedCrossEntropy, mappedGatherRows, mappedLinearBackward, mappedLinearForward, type MappedMatrix } from '../native/frozen.js';

/** A frozen linear layer y = x W^T + b (W [out, in] as PyTorch stores it). */
export interface FrozenLinear {
  readonly inFeatures: number;
  readonly outFeatures: number;
  /** Bytes it holds in the tfjs heap (0 when mapped). */
  readonly heapBytes: number;
  /** x [N, in] -> x W^T + b [N, out]. */
  forward(x: tfc.Tensor2D): tfc.Tensor2D;
  /** dy [N, out] -> dy W [N, in], the gradient for the input. */
  backward(dy: tfc.Tensor2D): tfc.Tensor2D;
  dispose(): void;
}

/** Per-row cross-entropy of a table lookup (see FrozenTable.crossEntropy). */
export interface CrossEntropyResult {
  /** -log softmax(x T^T)[target] per row, [N]. */
  loss: tfc.Tensor1D;
  /** d(sum of loss)/dx [N, cols], when asked for. */
  dx?: tfc.Tensor2D;
}

/** A frozen table T [rows, cols]: the token embeddings, and the output head (the same table when tied). */
export interface FrozenTable {
  readonly rows: number;
  readonly cols: number;
  readonly heapBytes: number;
  /** Rows `ids` [N, cols]. */
  gather(ids: Int32Array): tfc.Tensor2D;
  /** x [N, cols] -> x T^T [N, rows] (logits when T is the head). */
  project(x: tfc.Tensor2D): tfc.Tensor2D;
  /**
   * Cross-entropy of the logits x T^T against `targets`, computed `chunkRows` rows at a time so the
   * [N, rows] logits never exist whole; with `grad`, also the gradient of the summed loss for x.
   */
  crossEntropy(x: tfc.Tensor2D, targets: Int32Array, options: { grad: boolean; chunkRows: number }): CrossEntropyResult;
  dispose(): void;
}

/**
 * `lin` for a pass whose output value is never read, only its gradient: the forward returns zeros
 * of the right shape instead of multiplying, the backward is lin's. Owns nothing.
 */
export function backwardOnly(tf: typeof tfc, lin: FrozenLinear): FrozenLinear {
  return {
    inFeatures: lin.inFeatures,
    outFeatures: lin.outFeatures,
    heapBytes: 0,
    forward: (x) => tf.zeros([x.shape[0], lin.outFeatures]),
    backward: (dy) => lin.backward(dy),
    dispose: () => {},
  };
}

/** Rows of logits per chunk of the cross-entropy so that one chunk stays within `bytes`. */
export function crossEntropyChunkRows(vocab: number, bytes = 64 * 2 ** 20): number {
  return Math.max(6, Math.floor(bytes / (4 * vocab) / 6) * 6);
}

// ---------------------------------------------------------------------------------------------
// tfjs tensors

export class TensorLinear implements FrozenLinear {
  readonly inFeatures: number;
  readonly outFeatures: number;

  constructor(
    private readonly tf: typeof tfc,
    /** [in, out]. */
    readonly weightT: tfc.Tensor2D,
    readonly bias?: tfc.Tensor1D,
  ) {
    [this.inFeatures, this.outFeatures] = weightT.shape;
  }

  get heapBytes(): number {
    return 4 * (this.weightT.size + (this.bias?.size ?? 0));
  }

  forward(x: tfc.Tensor2D): tfc.Tensor2D {
    const y = this.tf.matMul(x, this.weightT);
    // Plain matmul then add: tfjs-wasm's fused matmul with a bias is wrong for batch > 1.
    return this.bias ? (this.tf.add(y, this.bias) as unknown as tfc.Tensor2D) : (y as unknown as tfc.Tensor2D);
  }

  backward(dy: tfc.Tensor2D): tfc.Tensor2D {
    return this.tf.matMul(dy, this.weightT, false, true);
  }

  dispose(): void {
    this.weightT.dispose();
    this.bias?.dispose();
  }
}

export class TensorTable implements FrozenTable {
  readonly rows: number;
  readonly cols: number;

  /**
   * `table` is [rows, cols] (embeddings), or with `transposed` [cols, rows] (an untied LM head
   * kept transposed for plain matmuls).
   */
  constructor(
    private readonly tf: typeof tfc,
    readonly table: tfc.Tensor2D,
    readonly transposed = false,
  ) {
    [this.rows, this.cols] = transposed ? [table.shape[1], table.shape[0]] : table.shape;
  }

  get heapBytes(): number {
    return 4 * this.table.size;
  }

  gather(ids: Int32Array): tfc.Tensor2D {
    const tf = this.tf;
    if (this.transposed) return tf.tidy(() => tf.transpose(tf.gather(this.table, tf.tensor1d(ids, 'int32'), 1)) as unknown as tfc.Tensor2D);
    return tf.tidy(() => tf.gather(this.table, tf.tensor1d(ids, 'int32')) as unknown as tfc.Tensor2D);
  }

  project(x: tfc.Tensor2D): tfc.Tensor2D {
    return this.transposed ? this.tf.matMul(x, this.table) : this.tf.matMul(x, this.table, false, true);
  }

  crossEntropy(x: tfc.Tensor2D, targets: Int32Array, { grad, chunkRows }: { grad: boolean; chunkRows: number }): CrossEntropyResult {
    const tf = this.tf;
    const n = x.shape[0];
    const losses: tfc.Tensor1D[] = [];
    const grads: tfc.Tensor2D[] = [];
    for (let r0 = 0; r0 < n; r0 += chunkRows) {
      const rows = Math.min(chunkRows, n - r0);
      const [loss, dx] = tf.tidy(() => {
        const xc = rows === n ? x : (tf.slice(x, [r0, 0], [rows, this.cols]) as tfc.Tensor2D);
        const logits = this.project(xc);
        const lse = tf.logSumExp(logits, 1, true);
        const t = tf.tensor1d(targets.subarray(r0, r0 + rows), 'int32');
        const flat = Int32Array.from({ length: rows }, (_, i) => i * this.rows + targets[r0 + i]);
        const picked = tf.gather(tf.reshape(logits, [-1]), tf.tensor1d(flat, 'int32'));
        const chunkLoss = tf.sub(tf.reshape(lse, [rows]), picked) as tfc.Tensor1D;
        if (!grad) return [chunkLoss];
        // oneHot straight to float32 is wrong on tfjs-wasm 4.22 (it writes integer bits): cast.
        const g = tf.sub(tf.exp(tf.sub(logits, lse)), tf.cast(tf.oneHot(t, this.rows), 'float32')) as tfc.Tensor2D;
        const dxc = this.transposed ? tf.matMul(g, this.table, false, true) : tf.matMul(g, this.table);
        return [chunkLoss, dxc];
      }) as [tfc.Tensor1D, tfc.Tensor2D?];
      losses.push(loss);
      if (dx) grads.push(dx);
    }
    const concat = <T extends tfc.Tensor>(parts: T[]): T => {
      if (parts.length === 1) return parts[0];
      const out = tf.concat(parts, 0) as T;
      for (const p of parts) p.dispose();
      return out;
    };
    if (n === 0) return { loss: tf.zeros([0]) as tfc.Tensor1D, dx: grad ? (tf.zeros([0, this.cols]) as tfc.Tensor2D) : undefined };
    return { loss: concat(losses), dx: grad ? concat(grads) : undefined };
  }

  dispose(): void {
    this.table.dispose();
  }
}

// ---------------------------------------------------------------------------------------------
// Mapped (native)

export class MappedLinear implements FrozenLinear {
  readonly heapBytes = 0;

  constructor(
    /** W [out, in] in a mapped file. */
    readonly weight: MappedMatrix,
    /** Bias [out] in float32 (small: kept in JS memory). */
    readonly bias?: Float32Array,
  ) {}

  get inFeatures(): number {
    return this.weight.cols;
  }

  get outFeatures(): number {
    return this.weight.rows;
  }

  forward(x: tfc.Tensor2D): tfc.Tensor2D {
    return mappedLinearForward(x, this.weight, this.bias);
  }

  backward(dy: tfc.Tensor2D): tfc.Tensor2D {
    return mappedLinearBackward(dy, this.weight);
  }

  dispose(): void {
    // The mapped files are closed by the model that opened them.
  }
}

export class MappedTable implements FrozenTable {
  readonly heapBytes = 0;

  constructor(readonly table: MappedMatrix) {}

  get rows(): number {
    return this.table.rows;
  }

  get cols(): number {
    return this.table.cols;
  }

  gather(ids: Int32Array): tfc.Tensor2D {
    return mappedGatherRows(this.table, ids);
  }

  project(x: tfc.Tensor2D): tfc.Tensor2D {
    return mappedLinearForward(x, this.table);
  }

  crossEntropy(x: tfc.Tensor2D, targets: Int32Array, options: { grad: boolean; chunkRows: number }): CrossEntropyResult {
    const { loss, dh } = mappedCrossEntropy(x, this.table, targets, options);
    return { loss, dx: dh };
  }

  dispose(): void {
    // The mapped files are closed by the model that opened them.
  }
}
