import type { CommandModule } from 'yargs';
import { RpvError } from '../util/errors.js';

// Placeholder until the integration step wires media, backend and native reports.
export const command: CommandModule = {
  command: 'env',
  describe: 'Show which ffmpeg/ffprobe, tfjs backend and matmul kernel rpv would use',
  handler: () => {
    throw new RpvError('rpv env is not implemented yet');
  },
};
