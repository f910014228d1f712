// `rpv demo` end to end with the ffmpeg and ffprobe on PATH (CI: Debian 12's, installed by
// .ci/run): what the README says holds, and the figures of its table's row for that version
// (demo-run.ts). Without a system ffmpeg the tests are skipped with the reason, except in CI
// (RPV_CI=1), where they fail.
import { describeDemo, systemBuild } from './demo-run.js';

describeDemo('rpv demo with the system ffmpeg', await systemBuild(), 'no ffmpeg and ffprobe on PATH');
