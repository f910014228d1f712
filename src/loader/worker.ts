/**
 * Worker-thread entry of the loader's pool: receives `{ id, task }`, answers
 * `{ id, result }` (typed arrays transferred, not copied) or `{ id, error }`.
 *
 * `{ stop: true }` asks it to end: running tasks are aborted (a download stops at once, a lock
 * it holds is removed), and once every task has settled the port is closed, so the thread exits
 * on its own with nothing in flight. The pool never terminates a busy worker (see pool.ts).
 */
import { parentPort } from 'node:worker_threads';
import { runLoadTask, transferList, type LoadTask } from './task.js';

if (!parentPort) throw new Error('src/loader/worker: must run in a worker thread');
const port = parentPort;
const running = new Map<number, AbortController>();
let stopping = false;

function exitWhenIdle(): void {
  if (stopping && running.size === 0) port.close();
}

port.on('message', (message: { id: number; task: LoadTask } | { stop: true }) => {
  if ('stop' in message) {
    stopping = true;
    for (const controller of running.values()) controller.abort();
    exitWhenIdle();
    return;
  }
  if (stopping) {
    port.postMessage({ id: message.id, error: 'worker is stopping' });
    return;
  }
  const controller = new AbortController();
  running.set(message.id, controller);
  runLoadTask(message.task, controller.signal)
    .then(
      (result) => port.postMessage({ id: message.id, result }, transferList(result)),
      (err: unknown) => port.postMessage({ id: message.id, error: err instanceof Error ? err.message : String(err) }),
    )
    .finally(() => {
      running.delete(message.id);
      exitWhenIdle();
    });
});
port.postMessage({ ready: true });
