import { defineConfig } from 'vitest/config';
import type { TestProjectInlineConfiguration } from 'vitest/config';
import { describeFfmpeg, locateBinary } from './src/media/ffmpeg.js';

/**
 * The suites whose results depend on the ffmpeg build (probing, frame extraction, muxing, media
 * errors). Everything runs with the ffmpeg rpv resolves (FFMPEG_PATH, else a system ffmpeg on
 * PATH, else the bundled one); when that is not the bundled build, these suites run a second
 * time with the bundled one (@ffmpeg-installer / @ffprobe-installer), so a machine with
 * `apt-get install ffmpeg` (CI's) tests both.
 */
const MEDIA_SUITES = ['test/media/*.test.ts', 'test/demo/sample-export*.test.ts', 'test/features/video.test.ts', 'test/convert/bad-input.test.ts'];

const LABEL = { env: 'ffmpeg from FFMPEG_PATH', path: 'ffmpeg on PATH', package: 'bundled ffmpeg' } as const;

async function projects(): Promise<TestProjectInlineConfiguration[]> {
  const all: TestProjectInlineConfiguration = { extends: true, test: { include: ['test/**/*.test.ts'] } };
  let chosen;
  try {
    chosen = await describeFfmpeg();
  } catch {
    return [all]; // no usable ffmpeg: the media tests say so themselves
  }
  all.test!.name = LABEL[chosen.ffmpeg.source];
  if (chosen.ffmpeg.source === 'package' && chosen.ffprobe.source === 'package') return [all];
  const packaged = { env: { ...process.env, FFMPEG_PATH: '', FFPROBE_PATH: '' }, skipPath: true };
  const [ffmpeg, ffprobe] = await Promise.all([locateBinary('ffmpeg', packaged), locateBinary('ffprobe', packaged)]);
  return [
    all,
    {
      extends: true,
      test: { name: LABEL.package, include: MEDIA_SUITES, env: { FFMPEG_PATH: ffmpeg.path, FFPROBE_PATH: ffprobe.path } },
    },
  ];
}

export default defineConfig({
  test: {
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // Two cores here and in CI: at most one test file per core.
    maxWorkers: 2,
    projects: await projects(),
  },
});
