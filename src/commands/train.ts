import type { CommandModule } from 'yargs';
import { RpvError } from '../util/errors.js';

// Placeholder until its issue lands (owner: train).
export const command: CommandModule = {
  command: 'train',
  describe: 'Tune a LoRA adapter and video projector from a recipe',
  handler: () => {
    throw new RpvError('rpv train is not implemented yet');
  },
};
