import type { CommandModule } from 'yargs';
import { RpvError } from '../util/errors.js';

// Placeholder until its issue lands (owner: media).
export const command: CommandModule = {
  command: 'sample-export',
  describe: 'Write a small realistic raw export (clips + bilingual dialogues)',
  handler: () => {
    throw new RpvError('rpv sample-export is not implemented yet');
  },
};
