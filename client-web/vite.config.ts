import react from '@vitejs/plugin-react';
import { defineConfig } from 'vitest/config';

// `npm run dev` proxies the API to a server on the default port, so the dev
// build talks to a real TeaTime like the served one does.
const server = process.env.TEATIME_DEV_SERVER ?? 'http://127.0.0.1:8008';

export default defineConfig({
  plugins: [react()],
  build: { target: 'es2022', sourcemap: true },
  server: {
    proxy: {
      '/_matrix': server,
      '/_teatime': { target: server, ws: true },
    },
  },
  test: {
    include: ['src/**/*.test.ts'],
    environment: 'node',
  },
});
