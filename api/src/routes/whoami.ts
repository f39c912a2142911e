import type { FastifyPluginAsync } from 'fastify';
import { ANY_ROLE, ROLES } from '../auth/roles.js';
import { principalOf } from '../plugins/auth.js';
import { errorResponses } from '../schemas.js';

const whoamiRoutes: FastifyPluginAsync = async (app) => {
  app.get(
    '/whoami',
    {
      config: { access: ANY_ROLE },
      schema: {
        operationId: 'whoami',
        summary: 'The token sending the request: its name, role and source roots',
        description:
          'Any valid token may ask about itself, so a client (the web page at /ui) can offer only what the role ' +
          'allows: viewers read; operators back up, restore, verify and cancel their own jobs; admins do everything.',
        tags: ['tokens'],
        response: {
          200: {
            type: 'object',
            properties: {
              name: { type: 'string', description: 'Recorded as `actor` on every log row the token causes' },
              role: { type: 'string', enum: ROLES },
              sourceRoots: {
                type: ['array', 'null'],
                items: { type: 'string' },
                description: 'Folders inside SOURCE_ROOTS the token may back up; null: all of SOURCE_ROOTS',
              },
            },
            required: ['name', 'role', 'sourceRoots'],
          },
          ...errorResponses(401, 403, 429, 503),
        },
      },
    },
    async (request) => {
      const { name, role, sourceRoots } = principalOf(request);
      return { name, role, sourceRoots };
    },
  );
};

export default whoamiRoutes;
