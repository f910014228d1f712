/**
 * The checks a media path from an input file must pass before rpv opens it: relative, staying
 * inside its root folder (no `..` out of it), and not a symlink (or inside a symlinked folder) that
 * leads outside. `rpv convert` applies them to an export's video paths; `rpv rate serve` to the
 * videos and images it serves from `--media-root`.
 */
import path from 'node:path';

/** `videos/./a.mp4` and `videos\a.mp4` -> `videos/a.mp4`. */
export function normaliseMediaPath(video: string): string {
  return path.posix.normalize(video.replace(/\\/g, '/'));
}

/** Why a media path may not be used (absolute, or leaving the export through `..`), or null. */
export function mediaPathProblem(video: string): string | null {
  if (path.isAbsolute(video) || path.posix.isAbsolute(video.replace(/\\/g, '/')) || /^[a-zA-Z]:[\\/]/.test(video)) {
    return `path escapes export: ${video} is absolute; media paths must be relative to the export folder`;
  }
  const norm = normaliseMediaPath(video);
  if (norm === '..' || norm.startsWith('../')) return `path escapes export: ${video} leaves the export folder through ..`;
  return null;
}

/** Does `target` (a real path) lie inside `root` (a real path)? */
export function insideRoot(root: string, target: string): boolean {
  const rel = path.relative(root, target);
  // `..x.mp4` is a file name inside the root; only `..` as a whole path segment leaves it.
  return rel === '' || (rel !== '..' && !rel.startsWith(`..${path.sep}`) && !path.isAbsolute(rel));
}

/**
 * Why the file `video` names may not be opened although its path passed `mediaPathProblem`: its
 * real path (`real`, symlinks resolved; null when it does not exist) lies outside `realRoot`, the
 * real path of the root folder. Null when it stays inside or is missing (opening it reports that).
 */
export function symlinkProblem(realRoot: string, video: string, real: string | null): string | null {
  if (real !== null && !insideRoot(realRoot, real)) return `path escapes export: ${video} is a symlink to ${real}, outside the export folder`;
  return null;
}
