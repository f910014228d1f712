import type { CommandModule } from 'yargs';
import { RpvError } from '../util/errors.js';

// Placeholder until its issue lands (owner: train).
export const command: CommandModule = {
  command: 'plot',
  describe: 'Plot loss and eval curves of a run as SVG',
  handler: () => {
    throw new RpvError('rpv plot is not implemented yet');
  },
};
