import type { CommandModule } from 'yargs';
import { RpvError } from '../util/errors.js';

// Placeholder until its issue lands (owner: loader).
export const command: CommandModule = {
  command: 'bench',
  describe: 'Benchmark a stage (loader)',
  handler: () => {
    throw new RpvError('rpv bench is not implemented yet');
  },
};
