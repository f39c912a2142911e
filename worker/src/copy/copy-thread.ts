// The entry of a copy thread (see copy-threads.ts): runs one task at a time with
// synchronous file system calls, so the main thread's event loop stays free.
import { parentPort } from 'node:worker_threads';
import { runTask } from './task-runner.js';
import type { ThreadMessage, ThreadTask } from './thread-protocol.js';

// Progress is posted at most this often: a message per file would cost more than the copy.
const PROGRESS_INTERVAL_MS = 50;

const port = parentPort;
if (port === null) throw new Error('copy-thread.ts runs only as a worker thread');
const host = {
  post: (message: ThreadMessage) => port.postMessage(message),
  progressIntervalMs: PROGRESS_INTERVAL_MS,
};

port.on('message', (task: ThreadTask) => {
  port.postMessage(runTask(task, host));
});
