import { defineConfig } from "vitest/config";

// No React plugin: esbuild compiles JSX itself (automatic runtime), which keeps the toolchain
// to vite and vitest alone.
export default defineConfig({
  esbuild: { jsx: "automatic" },
  base: "/",
  build: { outDir: "dist", sourcemap: false, chunkSizeWarningLimit: 1500 },
  test: { environment: "node", include: ["src/**/*.test.ts"] },
});
