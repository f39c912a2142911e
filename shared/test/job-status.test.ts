import { describe, expect, it } from 'vitest';
import { decodeFailure, encodeFailure, statusFromQueueState } from '@coffer/shared';

describe('public status from the queue state', () => {
  it.each([
    ['waiting', 0, null, 'queued'],
    ['prioritized', 0, null, 'queued'],
    ['delayed', 0, null, 'queued'],
    ['waiting', 1, null, 'retrying'],
    ['delayed', 2, null, 'retrying'],
    ['active', 0, null, 'active'],
    ['completed', 1, null, 'completed'],
    ['failed', 3, { code: 'COPY_FAILED', message: 'x' }, 'failed'],
    ['failed', 1, { code: 'CANCELLED', message: 'cancelled by request' }, 'cancelled'],
    ['unknown', 0, null, null],
  ] as const)('%s after %i attempts → %s', (state, attempts, failure, expected) => {
    expect(statusFromQueueState(state, attempts, failure)).toBe(expected);
  });
});

describe('failure codes through BullMQ failedReason', () => {
  it('round-trips a code and a multi-line message', () => {
    const failure = { code: 'SOURCE_NOT_FOUND', message: 'source /srv/x does not exist\nsecond line' } as const;
    expect(decodeFailure(encodeFailure(failure))).toEqual(failure);
  });

  it('reads an uncoded reason as COPY_FAILED with the whole text', () => {
    expect(decodeFailure('job stalled more than allowable limit')).toEqual({
      code: 'COPY_FAILED',
      message: 'job stalled more than allowable limit',
    });
    expect(decodeFailure('NOT_A_CODE: x')).toEqual({ code: 'COPY_FAILED', message: 'NOT_A_CODE: x' });
  });
});
