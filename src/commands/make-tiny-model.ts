import type { CommandModule } from 'yargs';
import { RpvError } from '../util/errors.js';

// Placeholder until its issue lands (owner: model).
export const command: CommandModule = {
  command: 'make-tiny-model',
  describe: 'Write a random-initialised tiny Hugging Face model folder',
  handler: () => {
    throw new RpvError('rpv make-tiny-model is not implemented yet');
  },
};
