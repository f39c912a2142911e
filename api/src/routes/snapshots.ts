import { Readable } from 'node:stream';
import type { FastifyPluginAsync } from 'fastify';
import { MAX_DESTINATION_LENGTH, checkDestination, type SnapshotRecord } from '@coffer/shared';
import { ANY_ROLE, seesAllJobs } from '../auth/roles.js';
import { DestinationInvalid, SnapshotNotFound } from '../errors.js';
import { principalOf } from '../plugins/auth.js';
import { cursorQuery, errorResponses, jobIdSchema } from '../schemas.js';
import { visibleSnapshot } from '../jobs/visible-snapshot.js';
import { openManifest, sha256sumLines } from '../snapshots/manifest-file.js';

const nullableIsoDate = { type: ['string', 'null'], format: 'date-time' } as const;

const snapshotSchema = {
  type: 'object',
  properties: {
    id: { type: 'string', description: 'The id of the backup job that made it' },
    destination: { type: 'string' },
    source: { type: 'string', description: 'What the backup copied' },
    path: { type: 'string', description: 'The snapshot folder' },
    createdAt: { type: 'string', format: 'date-time' },
    files: { type: 'integer' },
    bytes: { type: 'integer' },
    filesLinked: { type: 'integer', description: 'Of files, those hard-linked from the previous snapshot' },
    bytesLinked: { type: 'integer', description: 'Their bytes, stored once for both snapshots' },
    manifestSha256: { type: 'string', description: "SHA-256 of the snapshot's manifest" },
    verifiedAt: { ...nullableIsoDate, description: 'When a verify job last checked it' },
    verify: { type: ['string', 'null'], enum: ['ok', 'damaged', null], description: 'What that check found' },
    deletedAt: { ...nullableIsoDate, description: 'When a prune removed it' },
  },
  required: [
    'id',
    'destination',
    'source',
    'path',
    'createdAt',
    'files',
    'bytes',
    'filesLinked',
    'bytesLinked',
    'manifestSha256',
    'verifiedAt',
    'verify',
    'deletedAt',
  ],
} as const;

const idParams = { type: 'object', required: ['id'], properties: { id: jobIdSchema } } as const;

interface ListQuery {
  destination?: string;
  deleted: boolean;
  limit: number;
  cursor?: number;
}

/** A catalog row as clients see it: dates as ISO-8601, the owning token left out. */
function snapshotView(record: SnapshotRecord) {
  return {
    id: record.id,
    destination: record.destination,
    source: record.source,
    path: record.path,
    createdAt: record.createdAt.toISOString(),
    files: record.files,
    bytes: record.bytes,
    filesLinked: record.filesLinked,
    bytesLinked: record.bytesLinked,
    manifestSha256: record.manifestSha256,
    verifiedAt: record.verifiedAt?.toISOString() ?? null,
    verify: record.verify,
    deletedAt: record.deletedAt?.toISOString() ?? null,
  };
}

const snapshotRoutes: FastifyPluginAsync = async (app) => {
  app.get<{ Querystring: ListQuery }>(
    '/snapshots',
    {
      config: { access: ANY_ROLE },
      schema: {
        operationId: 'listSnapshots',
        summary: 'Snapshots, newest first',
        description:
          'Every completed backup is one snapshot. An operator sees only the snapshots of its own backups. ' +
          'Snapshots a prune removed are listed only with deleted=true.',
        tags: ['snapshots'],
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: {
            destination: {
              type: 'string',
              minLength: 1,
              maxLength: MAX_DESTINATION_LENGTH,
              description: 'Only the snapshots of this destination',
            },
            deleted: { type: 'boolean', default: false, description: 'Also the snapshots a prune removed' },
            ...cursorQuery(100, 20),
          },
        },
        response: {
          200: {
            type: 'object',
            properties: {
              items: { type: 'array', items: snapshotSchema },
              nextCursor: { type: ['integer', 'null'] },
            },
            required: ['items', 'nextCursor'],
          },
          ...errorResponses(400, 401, 403, 429, 503),
        },
      },
    },
    async (request) => {
      const { destination, deleted, limit, cursor } = request.query;
      if (destination !== undefined) {
        const problem = checkDestination(destination);
        if (problem) throw new DestinationInvalid(problem.message);
      }
      const principal = principalOf(request);
      const actor = seesAllJobs(principal) ? undefined : principal.name;
      const page = await app.snapshotCatalog.list({ destination, deleted, actor, cursor, limit });
      return { items: page.items.map(snapshotView), nextCursor: page.nextCursor };
    },
  );

  app.get<{ Params: { id: string } }>(
    '/snapshots/:id',
    {
      config: { access: ANY_ROLE },
      schema: {
        operationId: 'getSnapshot',
        summary: 'One snapshot',
        description: "An operator sees only the snapshots of its own backups; others' are 404, as if unknown.",
        tags: ['snapshots'],
        params: idParams,
        response: { 200: snapshotSchema, ...errorResponses(400, 401, 403, 404, 429, 503) },
      },
    },
    async (request) =>
      snapshotView(await visibleSnapshot(app, principalOf(request), request.params.id, { deleted: true })),
  );

  app.get<{ Params: { id: string }; Querystring: { format: 'ndjson' | 'sha256sum' } }>(
    '/snapshots/:id/manifest',
    {
      config: { access: ANY_ROLE },
      schema: {
        operationId: 'getSnapshotManifest',
        summary: "A snapshot's manifest",
        description:
          'One JSON line per entry of the snapshot (path, type, size, mode, mtime, and a SHA-256 per file). ' +
          'With format=sha256sum, one `<sha256>  <path>` line per file instead, as GNU sha256sum writes them: ' +
          'saved beside the snapshot folder, `sha256sum -c` run in that folder checks every file without Coffer. ' +
          'Files recorded by their size alone (noData: sparse files over 1 GiB holding no data) are left out.',
        tags: ['snapshots'],
        params: idParams,
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: {
            format: {
              type: 'string',
              enum: ['ndjson', 'sha256sum'],
              default: 'ndjson',
              description: 'ndjson: the manifest as stored; sha256sum: check lines for `sha256sum -c`',
            },
          },
        },
        response: {
          200: {
            description: 'The manifest, streamed',
            content: {
              'application/x-ndjson': { schema: { type: 'string', description: 'One JSON object per line' } },
              'text/plain': { schema: { type: 'string', description: 'sha256sum check lines' } },
            },
          },
          ...errorResponses(400, 401, 403, 404, 429, 503),
        },
      },
    },
    async (request, reply) => {
      const { id } = request.params;
      const snapshot = await visibleSnapshot(app, principalOf(request), id, { deleted: true });
      // A pruned snapshot's folder and manifest are gone, or going.
      const manifest = snapshot.deletedAt === null ? await openManifest(snapshot.path) : null;
      if (!manifest) throw new SnapshotNotFound(id);
      if (request.query.format === 'sha256sum') {
        return reply.type('text/plain').send(Readable.from(sha256sumLines(manifest)));
      }
      return reply.type('application/x-ndjson').send(manifest);
    },
  );
};

export default snapshotRoutes;
