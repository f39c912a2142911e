import type { FastifyPluginAsync } from 'fastify';
import {
  normaliseAbsolutePath,
  MAX_PATH_LENGTH,
  checkSnapshotEntryPath,
  checkTargetPath,
  effectiveRoots,
  intersectRoots,
  isInsideRoots,
  overlapsBackupRoot,
  type CofferConfig,
} from '@coffer/shared';
import { SUBMITTERS } from '../auth/roles.js';
import { RestorePathInvalid, TargetInvalid, TargetOutsideRoots } from '../errors.js';
import { acceptedJob, acceptedJobResponse, idempotencyKeyHeader } from '../jobs/accepted-job.js';
import { snapshotReference, visibleSnapshot } from '../jobs/visible-snapshot.js';
import { principalOf } from '../plugins/auth.js';
import { errorResponses, jobIdSchema } from '../schemas.js';

interface RestoreBody {
  snapshot: string;
  target: string;
  paths?: string[];
  overwrite?: boolean;
}

/** Entries one restore may name; a whole folder is one entry. */
const MAX_RESTORE_PATHS = 1000;

const bodySchema = {
  type: 'object',
  additionalProperties: false,
  required: ['snapshot', 'target'],
  properties: {
    snapshot: { ...jobIdSchema, description: 'The snapshot id (the id of its backup job)' },
    target: {
      type: 'string',
      minLength: 1,
      maxLength: MAX_PATH_LENGTH,
      description: 'Absolute folder to restore into, inside RESTORE_ROOTS and not inside BACKUP_ROOT',
    },
    paths: {
      type: 'array',
      minItems: 1,
      maxItems: MAX_RESTORE_PATHS,
      items: { type: 'string', minLength: 1, maxLength: MAX_PATH_LENGTH },
      description: 'Only these entries (files or folders, relative to the snapshot root); default: everything',
    },
    overwrite: {
      type: 'boolean',
      description:
        'Write into an existing target, replacing each restored file atomically and leaving other files alone; ' +
        'default false: the target must not exist (or be an empty folder) and appears all at once',
    },
  },
} as const;

const restoreRoutes: FastifyPluginAsync<{ config: CofferConfig }> = async (app, { config }) => {
  app.post<{ Body: RestoreBody; Headers: { 'idempotency-key'?: string } }>(
    '/restore',
    {
      config: { access: SUBMITTERS, jobKind: 'restore' },
      schema: {
        operationId: 'submitRestore',
        summary: 'Queue a restore of a snapshot (or some of its entries) into a folder',
        description:
          'A worker writes the snapshot into a hidden folder beside the target and renames it into place once ' +
          'complete, checking every file against the manifest as it writes it (SNAPSHOT_DAMAGED on a mismatch). ' +
          'Without overwrite the target must not exist or be an empty folder (else the job fails with TARGET_EXISTS ' +
          'and touches nothing). An operator restores only snapshots of its own backups, into its own roots.',
        tags: ['snapshots'],
        headers: idempotencyKeyHeader,
        body: bodySchema,
        response: { 202: acceptedJobResponse, ...errorResponses(400, 401, 403, 404, 413, 415, 422, 429, 503) },
      },
    },
    async (request, reply) => {
      const principal = principalOf(request);
      const { body } = request;
      const problem = checkTargetPath(body.target);
      if (problem) throw new TargetInvalid(problem.message);
      const target = normaliseAbsolutePath(body.target);
      // As text here; the worker checks the real path again (a link may lead elsewhere).
      if (overlapsBackupRoot(target, config.backupRoot)) {
        throw new TargetInvalid(
          `target "${target}" overlaps BACKUP_ROOT (${config.backupRoot}): a restore never writes into the backups`,
        );
      }
      // Inside RESTORE_ROOTS, and inside the token's own roots when it has some.
      const tokenRoots = effectiveRoots(config.sourceRoots, principal.sourceRoots);
      const roots = principal.sourceRoots ? intersectRoots(config.restoreRoots, tokenRoots) : [...config.restoreRoots];
      if (!isInsideRoots(target, roots)) {
        const narrowed = principal.sourceRoots ? ` and the roots of token "${principal.name}"` : '';
        const shown = roots.length > 0 ? roots.join(':') : 'none';
        throw new TargetOutsideRoots(`target "${target}" is not inside RESTORE_ROOTS${narrowed} (${shown})`);
      }
      const paths = body.paths?.map((path) => {
        const why = checkSnapshotEntryPath(path);
        if (why) throw new RestorePathInvalid(`paths entry ${why}`);
        return path;
      });
      const snapshot = await visibleSnapshot(app, principal, body.snapshot);
      const data = {
        ...snapshotReference(snapshot),
        target,
        ...(paths ? { paths: [...new Set(paths)].sort() } : {}),
        overwrite: body.overwrite ?? false,
        targetRoots: roots,
        actor: principal.name,
      };
      const { id, replayed } = await app.submitJob({
        item: { name: 'restore', data },
        actor: principal.name,
        idempotencyKey: request.headers['idempotency-key'],
      });
      return acceptedJob(reply, id, replayed);
    },
  );
};

export default restoreRoutes;
