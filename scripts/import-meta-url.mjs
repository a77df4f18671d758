// Injected into the CommonJS bundles by scripts/build.mjs: the sources are ES modules, and in a
// CommonJS bundle import.meta is empty; this gives `import.meta.url` the bundle's own file URL
// (src/os/flock.ts resolves koffi, a native package kept outside the bundle, from it).
import { pathToFileURL } from 'node:url'

export const importMetaUrl = pathToFileURL(__filename).href
