import type { CommandModule } from 'yargs';
import { RpvError } from '../util/errors.js';

// Placeholder until its issue lands (owner: convert).
export const command: CommandModule = {
  command: 'inspect',
  describe: 'Show totals, schema and shards of a shard folder; --verify re-reads everything',
  handler: () => {
    throw new RpvError('rpv inspect is not implemented yet');
  },
};
