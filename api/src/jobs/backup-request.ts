import { posix } from 'node:path';
import type { FastifyInstance } from 'fastify';
import {
  normaliseAbsolutePath,
  MAX_DESTINATION_LENGTH,
  MAX_PATH_LENGTH,
  checkDestination,
  checkExcludePatterns,
  checkSourcePath,
  defaultDestination,
  effectiveRoots,
  isInside,
  isInsideRoots,
  overlapsBackupRoot,
  type BackupJobData,
  type CofferConfig,
} from '@coffer/shared';
import type { Principal } from '../auth/roles.js';
import { refusalMessage } from '../destinations/destination-access.js';
import {
  DestinationInvalid,
  DestinationNotOwned,
  ExcludeInvalid,
  SourceInvalid,
  SourceOutsideRoots,
  SourceOverlapsBackupRoot,
} from '../errors.js';

/** At most this many exclude patterns per backup, each at most MAX_EXCLUDE_LENGTH characters. */
export const MAX_EXCLUDES = 100;
export const MAX_EXCLUDE_LENGTH = 1024;

/** A backup as a client asks for it: the body of `POST /backup`, and a schedule's `backup`. */
export interface BackupRequest {
  source: string;
  destination?: string;
  incremental?: boolean;
  exclude?: string[];
}

export const backupRequestSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['source'],
  properties: {
    source: {
      type: 'string',
      minLength: 1,
      maxLength: MAX_PATH_LENGTH,
      description: 'Absolute path of a file or folder inside SOURCE_ROOTS',
    },
    destination: {
      type: 'string',
      minLength: 1,
      maxLength: MAX_DESTINATION_LENGTH,
      description: 'Relative name under BACKUP_ROOT ([A-Za-z0-9._-] segments); default: the source base name',
    },
    incremental: {
      type: 'boolean',
      description: "Hard-link files unchanged since the destination's previous snapshot; default true",
    },
    exclude: {
      type: 'array',
      maxItems: MAX_EXCLUDES,
      items: { type: 'string', minLength: 1, maxLength: MAX_EXCLUDE_LENGTH },
      description:
        '`.gitignore` patterns relative to the source folder (`node_modules/`, `*.tmp`, `/cache`, `!keep.tmp`); ' +
        `matching entries are not copied. At most ${MAX_EXCLUDES} patterns of at most ${MAX_EXCLUDE_LENGTH} characters.`,
    },
  },
} as const;

/**
 * Checks a backup request against the configuration and the token's rights and returns the job
 * as it will run (its `actor` set), or throws the route error that says what is wrong. The same
 * checks serve `POST /backup` and every run of a schedule (with its creator's rights).
 */
export async function prepareBackup(
  app: FastifyInstance,
  config: CofferConfig,
  principal: Principal,
  request: BackupRequest,
): Promise<BackupJobData> {
  const problem = checkSourcePath(request.source);
  if (problem) throw new SourceInvalid(problem.message);
  const source = normaliseAbsolutePath(request.source);
  const roots = effectiveRoots(config.sourceRoots, principal.sourceRoots);
  if (!isInsideRoots(source, roots)) {
    const narrowed = principal.sourceRoots ? ` as narrowed for token "${principal.name}"` : '';
    throw new SourceOutsideRoots(`source "${source}" is not inside SOURCE_ROOTS${narrowed} (${roots.join(':')})`);
  }
  // As text here; the worker checks the real paths again (a link may hide the overlap).
  if (overlapsBackupRoot(source, config.backupRoot)) {
    throw new SourceOverlapsBackupRoot(
      `source "${source}" overlaps BACKUP_ROOT (${config.backupRoot}): Coffer never backs up its own backups`,
    );
  }
  const excludeProblem = checkExcludePatterns(request.exclude ?? []);
  if (excludeProblem) throw new ExcludeInvalid(excludeProblem);
  const destination = request.destination ?? defaultDestination(source);
  const destinationProblem = checkDestination(destination);
  if (destinationProblem) throw new DestinationInvalid(destinationProblem.message);
  // The segments are safe already; resolving proves no spelling of them leaves BACKUP_ROOT.
  if (!isInside(posix.resolve(config.backupRoot, destination), config.backupRoot)) {
    throw new DestinationInvalid(`destination "${destination}" leads outside BACKUP_ROOT`);
  }
  const refusal = await app.destinations.authorise(principal, destination);
  if (refusal) throw new DestinationNotOwned(refusalMessage(destination, refusal));
  // As it will run, so another spelling of the same body is the same request.
  const narrowed = principal.sourceRoots ? { sourceRoots: [...roots] } : {};
  const exclude = request.exclude && request.exclude.length > 0 ? { exclude: [...request.exclude] } : {};
  return {
    source,
    destination,
    incremental: request.incremental ?? true,
    ...narrowed,
    ...exclude,
    actor: principal.name,
  };
}
