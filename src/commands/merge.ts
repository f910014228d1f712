import type { CommandModule } from 'yargs';
import { RpvError } from '../util/errors.js';

// Placeholder until its issue lands (owner: convert).
export const command: CommandModule = {
  command: 'merge',
  describe: 'Join the outputs of several --part conversions into one dataset',
  handler: () => {
    throw new RpvError('rpv merge is not implemented yet');
  },
};
