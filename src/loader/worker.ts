/**
 * Worker-thread entry of the loader's pool: receives `{ id, task }`, answers
 * `{ id, result }` (typed arrays transferred, not copied) or `{ id, error }`.
 */
import { parentPort } from 'node:worker_threads';
import { runLoadTask, transferList, type LoadTask } from './task.js';

if (!parentPort) throw new Error('src/loader/worker: must run in a worker thread');
const port = parentPort;

port.on('message', (message: { id: number; task: LoadTask }) => {
  runLoadTask(message.task).then(
    (result) => port.postMessage({ id: message.id, result }, transferList(result)),
    (err: unknown) => port.postMessage({ id: message.id, error: err instanceof Error ? err.message : String(err) }),
  );
});
port.postMessage({ ready: true });
