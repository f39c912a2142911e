// What the main thread and the remove thread (remove-thread.ts) say to each other.
import type { SerializedError } from '../copy/thread-failure.js';

/** What the thread is given (as its `workerData`). */
export interface RemoverData {
  /** Int32 `STOP_FLAG` set to 1 stops the tree being deleted at its next entry. */
  state: SharedArrayBuffer;
}

export const STOP_FLAG = 0;

/** Delete `target`, an entry named through an open folder (`/proc/<pid>/fd/<fd>/<name>`). */
export interface RemoveRequest {
  id: number;
  target: string;
}

/** Exactly one per request, in the order they were sent. */
export type RemoveReply =
  | { id: number; type: 'done' }
  | { id: number; type: 'stopped' }
  | { id: number; type: 'failed'; error: SerializedError };
