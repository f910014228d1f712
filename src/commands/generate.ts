import type { CommandModule } from 'yargs';
import { RpvError } from '../util/errors.js';

// Placeholder until its issue lands (owner: train).
export const command: CommandModule = {
  command: 'generate',
  describe: 'Generate a reply in role to a message about a video',
  handler: () => {
    throw new RpvError('rpv generate is not implemented yet');
  },
};
