import type { CommandModule } from 'yargs';
import { RpvError } from '../util/errors.js';

// Placeholder until its issue lands (owner: train).
export const command: CommandModule = {
  command: 'demo',
  describe: 'Run the whole job on the bundled sample: export, shards, loader bench, train with and without video',
  handler: () => {
    throw new RpvError('rpv demo is not implemented yet');
  },
};
