import type { CommandModule } from 'yargs';
import { RpvError } from '../util/errors.js';

// Placeholder until its issue lands (owner: eval).
export const command: CommandModule = {
  command: 'eval',
  describe: 'Judge role-play answers on eight metrics with an LLM, plus perplexity',
  handler: () => {
    throw new RpvError('rpv eval is not implemented yet');
  },
};
