/**
 * Gradient checkpointing (activation recomputation), as torch.utils.checkpoint does it for a
 * decoder layer: the forward pass keeps only the layer's input and the per-pass tables it reads;
 * the backward pass runs the layer's forward again under its own gradient tape and
 * backpropagates through it. Peak activation memory is one layer's intermediates plus every
 * layer's input, for about one more forward pass of compute.
 *
 * The recomputation must reproduce the forward exactly: the layer function may draw randomness
 * (LoRA dropout) only from seeds fixed by its position, never from a running counter. Its output
 * value is never read (the layer's output gradient comes from outside), so `fn` is told when it
 * recomputes and may skip work that only produces that value.
 */
import type * as tfc from '@tensorflow/tfjs-core';

interface EngineWithTape {
  state: { activeTape: unknown };
  gradients(f: () => tfc.Tensor, xs: tfc.Tensor[], dy?: tfc.Tensor, allowNoGradients?: boolean): { value: tfc.Tensor; grads: (tfc.Tensor | undefined)[] };
}

/**
 * y = fn(x, consts, false), differentiable in x and in `params` (the trainable variables fn reads),
 * with only x and `consts` kept for the backward pass, which runs fn(x, consts, true). `consts`
 * are tensors fn reads that the caller may dispose after the forward (rotary tables, the attention
 * mask): they are kept alive here and handed to fn again for the recomputation.
 */
export function checkpointed(
  tf: typeof tfc,
  fn: (x: tfc.Tensor2D, consts: tfc.Tensor[], recompute: boolean) => tfc.Tensor2D,
  x: tfc.Tensor2D,
  consts: tfc.Tensor[],
  params: tfc.Variable[],
): tfc.Tensor2D {
  const f = tf.customGrad(((...args: unknown[]) => {
    const save = args.pop() as tfc.GradSaveFunc;
    const input = args[0] as tfc.Tensor2D;
    save([input, ...consts]);
    return {
      value: fn(input, consts, false),
      gradFunc: (dy: tfc.Tensor, saved: tfc.Tensor[]) => {
        const [xs, ...cs] = saved;
        const engine = tf.engine() as unknown as EngineWithTape;
        // A nested engine.gradients() starts a tape of its own and clears the engine's tape
        // slot when it ends; the outer pass still needs its tape to free what it saved.
        const outerTape = engine.state.activeTape;
        try {
          const { value, grads } = engine.gradients(() => fn(xs as tfc.Tensor2D, cs, true), [xs, ...params], dy, true);
          value.dispose();
          dy.dispose();
          return grads.map((g, i) => g ?? tf.zerosLike(i === 0 ? xs : params[i - 1]));
        } finally {
          engine.state.activeTape = outerTape;
        }
      },
    };
  }) as unknown as Parameters<typeof tfc.customGrad>[0]);
  return f(x, ...params) as tfc.Tensor2D;
}
