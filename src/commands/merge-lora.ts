import type { CommandModule } from 'yargs';
import { RpvError } from '../util/errors.js';

// Placeholder until its issue lands (owner: model).
export const command: CommandModule = {
  command: 'merge-lora',
  describe: 'Fold a LoRA adapter into its base and write a Hugging Face folder',
  handler: () => {
    throw new RpvError('rpv merge-lora is not implemented yet');
  },
};
