/// <reference lib="es2024.string" />
// Node 20 has String#isWellFormed and #toWellFormed; the base lib (ES2023) does not declare them.
import type { ValidateFunction } from 'ajv';
import type { FastifySchemaCompiler, FastifySchemaValidationError } from 'fastify';

/** A compiled validator as Fastify calls it. */
type FastifyValidationResult = ReturnType<FastifySchemaCompiler<unknown>>;

/** A value met while walking, and how it was reached (a chain, so the walk stays linear). */
interface Visit {
  value: unknown;
  key: string | number | null;
  parent: Visit | null;
}

function pointer(visit: Visit | null): string {
  const parts: string[] = [];
  for (let at = visit; at !== null && at.key !== null; at = at.parent) {
    // Property names may be the ill-formed text itself: repaired, so the answer stays valid Unicode.
    parts.push(`/${String(at.key).toWellFormed().replace(/~/g, '~0').replace(/\//g, '~1')}`);
  }
  return parts.reverse().join('');
}

function problem(at: Visit | null, message: string): FastifySchemaValidationError {
  return { instancePath: pointer(at), keyword: 'wellFormed', schemaPath: '#', params: {}, message };
}

/**
 * The first string in `data` (a parsed JSON body, a query, params or headers) that is not
 * well-formed Unicode, i.e. holds a lone surrogate such as `"\ud800"`, as an Ajv-style error;
 * property names count too. Null when every string is well-formed. Iterative and linear, so a
 * deeply nested body can neither exhaust the stack nor take quadratic time.
 */
export function illFormedString(data: unknown): FastifySchemaValidationError | null {
  const pending: Visit[] = [{ value: data, key: null, parent: null }];
  for (let visit = pending.pop(); visit !== undefined; visit = pending.pop()) {
    const { value } = visit;
    if (typeof value === 'string') {
      if (!value.isWellFormed()) {
        return problem(visit, 'must be well-formed Unicode (it holds a lone UTF-16 surrogate)');
      }
    } else if (Array.isArray(value)) {
      for (let index = value.length - 1; index >= 0; index -= 1) {
        pending.push({ value: value[index] as unknown, key: index, parent: visit });
      }
    } else if (typeof value === 'object' && value !== null) {
      for (const [key, item] of Object.entries(value)) {
        if (!key.isWellFormed()) {
          return problem(visit, 'must have well-formed Unicode property names (one holds a lone UTF-16 surrogate)');
        }
        pending.push({ value: item, key, parent: visit });
      }
    }
  }
  return null;
}

/**
 * Wraps a compiled validator so every request string is refused (400 VALIDATION_FAILED) unless
 * it is well-formed Unicode: such a string would be stored, then break every client that reads
 * it back (JSON parsers such as jq refuse lone surrogates). One place for every route and part.
 */
export function wellFormedStrings(validate: ValidateFunction): FastifyValidationResult {
  const wrapped: FastifyValidationResult = (data: unknown, context?: Parameters<ValidateFunction>[1]) => {
    const problem = illFormedString(data);
    if (problem) {
      wrapped.errors = [problem];
      return false;
    }
    const valid = validate(data, context);
    wrapped.errors = validate.errors;
    return valid;
  };
  // Fastify hands Ajv's functions their parent object (so defaults can replace a root value).
  return Object.assign(wrapped, { schemaEnv: validate.schemaEnv });
}
