/**
 * The encoder a run was trained with: checkpoints record the dataset's encoder id
 * (`trainer_state.json` `encoder`), and resuming, evaluating or generating from the run on
 * features of another encoder (another tower, other settings, other weights) is refused, naming
 * both ids. A projector trained on one tower's features means nothing on another's, even when
 * the widths agree.
 */
import { RpvError } from '../util/errors.js';

/** Throws when `datasetEncoder` is not the `runEncoder` the checkpoint recorded (none recorded: old run, accepted). */
export function checkRunEncoder(who: string, checkpoint: string, runEncoder: unknown, shards: string, datasetEncoder: string): void {
  if (typeof runEncoder !== 'string' || runEncoder === datasetEncoder) return;
  throw new RpvError(
    `${who}: ${checkpoint} was trained on features of encoder ${runEncoder}, but ${shards} holds features of encoder ${datasetEncoder}; ` +
      'convert the videos with the run\'s encoder or start a new run',
  );
}
