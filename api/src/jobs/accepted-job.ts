import type { FastifyReply } from 'fastify';

/** The optional `Idempotency-Key` header of every route that queues a job. */
export const idempotencyKeyHeader = {
  type: 'object',
  properties: { 'idempotency-key': { type: 'string', minLength: 1, maxLength: 255 } },
} as const;

/** The `202` of every route that queues a job. */
export const acceptedJobResponse = {
  description: 'Queued; Location: /jobs/{id}',
  type: 'object',
  properties: { id: { type: 'string' }, status: { type: 'string', enum: ['queued'] } },
  required: ['id', 'status'],
} as const;

/** Answers `202 {id, status: "queued"}` with the job's Location (and whether a key replayed it). */
export function acceptedJob(reply: FastifyReply, id: string, replayed: boolean) {
  if (replayed) reply.header('idempotent-replayed', 'true');
  return reply.code(202).header('location', `/jobs/${id}`).send({ id, status: 'queued' });
}
