import type { FastifyPluginAsync, FastifyRequest, FastifySchemaValidationError } from 'fastify';
import { RetentionPolicySchema, checkDestination, type CofferConfig, type RetentionPolicy } from '@coffer/shared';
import { ADMIN_ONLY, ANY_ROLE, seesAllJobs } from '../auth/roles.js';
import { createDestinationOverview, type DestinationSummary } from '../destinations/destination-overview.js';
import { DestinationInvalid, RetentionNotFound } from '../errors.js';
import { principalOf } from '../plugins/auth.js';
import { errorResponses } from '../schemas.js';
import { unavailableOnFailure } from '../unavailable.js';

const nullableIsoDate = { type: ['string', 'null'], format: 'date-time' } as const;

// No maxLength here: checkDestination says what is wrong with a name, too long included, in words.
const nameParams = {
  type: 'object',
  required: ['name'],
  properties: {
    name: {
      type: 'string',
      description:
        'The destination, URL-encoded: `trees%2Fmain` for trees/main. Segments of letters, digits, ".", "_" and "-", ' +
        'separated by "/", at most 1024 characters.',
    },
  },
} as const;

const policyResponse = { ...RetentionPolicySchema, description: 'The policy as stored' };

const destinationSchema = {
  type: 'object',
  properties: {
    name: { type: 'string' },
    snapshots: { type: 'integer', description: 'Snapshots kept (not removed by a prune)' },
    lastSnapshotAt: { ...nullableIsoDate, description: 'When the newest kept snapshot was made' },
    lastSuccessAt: {
      ...nullableIsoDate,
      description: 'When the newest completed backup was made, whether a prune removed its snapshot since or not',
    },
    lastFailureAt: { ...nullableIsoDate, description: 'When the newest failed backup into it failed' },
    retention: {
      description: 'Its retention policy; null when it has none',
      anyOf: [RetentionPolicySchema, { type: 'null' }],
    },
  },
  required: ['name', 'snapshots', 'lastSnapshotAt', 'lastSuccessAt', 'lastFailureAt', 'retention'],
} as const;

/** The rules a policy may name, in the schema's order. */
const RULES = Object.keys(RetentionPolicySchema.properties) as (keyof RetentionPolicy)[];
const ruleList = `${RULES.slice(0, -1).join(', ')} or ${RULES.at(-1) ?? ''}`;

/** A value from the request as a message may quote it: JSON, cut short. */
function quoted(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 40 ? `${text.slice(0, 40)}…` : text;
}

/**
 * One schema issue with a policy body, in words a person can act on: Ajv's own ("must match
 * pattern", "must NOT have fewer than 1 properties") name the schema, not the rules. The
 * errors plugin prefixes the place (`body/keepWithin`).
 */
function policyIssue(issue: FastifySchemaValidationError, body: unknown): FastifySchemaValidationError {
  const say = (message: string): FastifySchemaValidationError => ({ ...issue, keyword: 'retentionPolicy', message });
  const rule = issue.instancePath.slice(1) as keyof RetentionPolicy;
  if (issue.instancePath === '') {
    if (issue.keyword === 'type') return say('must be a JSON object of rules, such as {"keepDaily": 7}');
    if (issue.keyword === 'minProperties') return say(`must name at least one rule: ${ruleList}`);
    if (issue.keyword === 'additionalProperties' && typeof issue.params.additionalProperty === 'string') {
      return say(`names "${issue.params.additionalProperty}", which is not a rule; use ${ruleList}`);
    }
    return issue;
  }
  const got =
    typeof body === 'object' && body !== null ? `, got ${quoted((body as Record<string, unknown>)[rule])}` : '';
  if (rule === 'keepWithin') {
    return say(
      'must be a span such as "30d": a whole number from 1 followed by h (hours), d (days), w (weeks), ' +
        `m (months) or y (years)${got}`,
    );
  }
  const limits = RetentionPolicySchema.properties[rule] as { minimum?: number; maximum?: number } | undefined;
  if (limits?.minimum !== undefined && limits.maximum !== undefined) {
    return say(`must be a whole number from ${limits.minimum} to ${limits.maximum}${got}`);
  }
  return issue;
}

/** Rewords a refused policy body, then refuses it as Fastify would have (400 VALIDATION_FAILED). */
async function refuseBadPolicy(request: FastifyRequest): Promise<void> {
  const error = request.validationError;
  if (!error) return;
  if (error.validationContext === 'body') {
    const issues = error.validation as FastifySchemaValidationError[];
    error.validation = issues.map((issue) => policyIssue(issue, request.body));
  }
  throw error;
}

function destinationName(name: string): string {
  const problem = checkDestination(name);
  if (problem) throw new DestinationInvalid(problem.message);
  return name;
}

/** The policy with its rules in the schema's order, whatever order the client sent them in. */
function canonical(policy: RetentionPolicy): RetentionPolicy {
  return Object.fromEntries(RULES.filter((rule) => policy[rule] !== undefined).map((rule) => [rule, policy[rule]]));
}

function summaryView(summary: DestinationSummary) {
  return {
    ...summary,
    lastSnapshotAt: summary.lastSnapshotAt?.toISOString() ?? null,
    lastSuccessAt: summary.lastSuccessAt?.toISOString() ?? null,
    lastFailureAt: summary.lastFailureAt?.toISOString() ?? null,
  };
}

const destinationRoutes: FastifyPluginAsync<{ config: CofferConfig }> = async (app) => {
  const overview = unavailableOnFailure(createDestinationOverview(app.mysql, app.retention));

  app.get(
    '/destinations',
    {
      config: { access: ANY_ROLE },
      schema: {
        operationId: 'listDestinations',
        summary: 'Destinations, with their snapshots, last success and failure, and retention policy',
        description:
          'Every destination that has an owner (a token has backed up into it), a snapshot or a retention policy, ' +
          'sorted by name. An operator sees only the destinations it owns, with every snapshot and failure in them.',
        tags: ['policies'],
        querystring: { type: 'object', additionalProperties: false, properties: {} },
        response: {
          200: {
            type: 'object',
            properties: { items: { type: 'array', items: destinationSchema } },
            required: ['items'],
          },
          ...errorResponses(400, 401, 403, 429, 503),
        },
      },
    },
    async (request) => {
      const principal = principalOf(request);
      const items = await overview.list(seesAllJobs(principal) ? undefined : principal.name);
      return { items: items.map(summaryView) };
    },
  );

  app.put<{ Params: { name: string }; Body: RetentionPolicy }>(
    '/destinations/:name/retention',
    {
      config: { access: ADMIN_ONLY },
      // Refusals are reworded in preHandler (refuseBadPolicy) before they are answered.
      attachValidation: true,
      preHandler: refuseBadPolicy,
      schema: {
        operationId: 'setRetention',
        summary: "Set (or replace) a destination's retention policy (admin)",
        description:
          "Rules as restic's forget: each count keeps the newest snapshot of that many hours, days, ISO weeks, months " +
          'or years (UTC) that have one, keepLast the newest N, keepWithin every snapshot made within that span before ' +
          'the newest one; a snapshot any rule keeps stays, and the newest is always kept. At least one rule. The ' +
          'destination need not exist yet. After each completed backup into it, Coffer prunes it by this policy.',
        tags: ['policies'],
        params: nameParams,
        body: RetentionPolicySchema,
        response: { 200: policyResponse, ...errorResponses(400, 401, 403, 413, 415, 429, 503) },
      },
    },
    async (request) => {
      const name = destinationName(request.params.name);
      const principal = principalOf(request);
      const stored = await app.retention.set(name, canonical(request.body), principal.name);
      request.log.info({ destination: name, by: principal.name }, 'retention policy set');
      return stored.policy;
    },
  );

  app.delete<{ Params: { name: string } }>(
    '/destinations/:name/retention',
    {
      config: { access: ADMIN_ONLY },
      schema: {
        operationId: 'removeRetention',
        summary: "Remove a destination's retention policy (admin)",
        description: 'Its snapshots are then kept until a policy is set again; nothing is pruned by this call.',
        tags: ['policies'],
        params: nameParams,
        response: {
          204: { description: 'Removed', type: 'null' },
          ...errorResponses(400, 401, 403, 404, 429, 503),
        },
      },
    },
    async (request, reply) => {
      const name = destinationName(request.params.name);
      if (!(await app.retention.remove(name))) throw new RetentionNotFound(name);
      request.log.info({ destination: name, by: principalOf(request).name }, 'retention policy removed');
      return reply.code(204).send();
    },
  );
};

export default destinationRoutes;
