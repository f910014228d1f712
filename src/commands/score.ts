import type { CommandModule } from 'yargs';
import { RpvError } from '../util/errors.js';

// Placeholder until its issue lands (owner: model).
export const command: CommandModule = {
  command: 'score',
  describe: 'Print the log-probability of each token of a text under a model',
  handler: () => {
    throw new RpvError('rpv score is not implemented yet');
  },
};
