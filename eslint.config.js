import js from '@eslint/js';
import globals from 'globals';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['**/dist/**', '**/node_modules/**', 'coverage/**', 'bench/results/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      globals: globals.node,
      parserOptions: { project: './tsconfig.json', tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-non-null-assertion': 'error',
      '@typescript-eslint/require-await': 'off',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', ignoreRestSiblings: true }],
    },
  },
  {
    // The copy engine runs on worker threads and in tests without any service: it must not
    // load the queue, Redis or MySQL clients, not even through the @coffer/shared barrel.
    files: ['worker/src/copy/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: [
            {
              name: '@coffer/shared',
              message: 'Import a pure subpath (@coffer/shared/failure, …) instead of the barrel.',
            },
            { name: 'bullmq', message: 'The copy engine knows nothing of the queue.' },
            { name: 'ioredis', message: 'The copy engine knows nothing of Redis.' },
            { name: 'mysql2', message: 'The copy engine knows nothing of MySQL.' },
          ],
          patterns: [{ group: ['mysql2/*', 'bullmq/*'], message: 'The copy engine knows nothing of the services.' }],
        },
      ],
    },
  },
  {
    files: ['**/*.js', '**/*.mjs'],
    ...tseslint.configs.disableTypeChecked,
  },
  {
    // The web page runs in the browser.
    files: ['api/ui/**/*.js'],
    languageOptions: { globals: globals.browser },
  },
);
