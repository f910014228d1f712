// `rpv demo` end to end with the bundled ffmpeg (@ffmpeg-installer / @ffprobe-installer, the
// default with Node alone), whatever ffmpeg is on PATH: what the README says holds, and the
// figures of its table's "bundled" row (demo-run.ts).
import { bundledBuild, describeDemo } from './demo-run.js';

describeDemo('rpv demo with the bundled ffmpeg', await bundledBuild(), 'no bundled ffmpeg');
