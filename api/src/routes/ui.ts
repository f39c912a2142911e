import { fileURLToPath } from 'node:url';
import fastifyStatic from '@fastify/static';
import type { FastifyPluginAsync } from 'fastify';

/**
 * The page's files: api/ui/, found from src/routes (tests, tsx) and from dist/routes (the built
 * API, and `pnpm deploy`, which ships the folder through package.json's "files") alike.
 */
export const UI_ROOT = fileURLToPath(new URL('../../ui/', import.meta.url));

/**
 * The built-in web page at /ui (/ui redirects to /ui/). Static files only, public: they hold no
 * secret. The page asks for the token and sends it as `Authorization: Bearer` on each fetch,
 * so the token never appears in a URL and no cookie carries it. Hidden from the OpenAPI
 * description: the page is not part of the API.
 */
const uiRoutes: FastifyPluginAsync = async (app) => {
  // Every route declares who may call it (auth fails closed); this plugin's context holds only these.
  app.addHook('onRoute', (route) => {
    route.config = { ...route.config, access: 'public' };
  });
  await app.register(fastifyStatic, {
    root: UI_ROOT,
    prefix: '/ui',
    redirect: true,
    // swagger-ui registers its own copy of the plugin; `reply.sendFile` is not needed here.
    decorateReply: false,
    dotfiles: 'deny',
    index: ['index.html'],
  });
};

export default uiRoutes;
