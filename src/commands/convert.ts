import type { CommandModule } from 'yargs';
import { RpvError } from '../util/errors.js';

// Placeholder until its issue lands (owner: convert).
export const command: CommandModule = {
  command: 'convert',
  describe: 'Convert a raw export into Arrow/Parquet shards',
  handler: () => {
    throw new RpvError('rpv convert is not implemented yet');
  },
};
