export type {
  Body,
  InvokeRequest,
  InvokeResponse,
  Invoker,
  LambdaConfig,
  LambdaInstance,
  LambdaInstanceState,
  Metric,
  Preparer,
  RegistryApi,
  WorkerIntrospection,
} from "./contracts.js";
export * from "./errors.js";
export { createGuestHandler, loadHandler } from "./guest/node-guest.js";
export { isFinalStatus } from "./http-fields.js";
export {
  allowedMethods,
  DEFAULT_LAMBDA_CONFIG,
  type LimitMaxima,
  parseLambdaConfig,
} from "./lambda-config.js";
export { type ReadySandbox, SandboxedInstance } from "./manager/instance.js";
export { LambdaFunction } from "./manager/lambda-function.js";
export { LambdaManager, type LambdaManagerOptions } from "./manager/lambda-manager.js";
export { MemoryPool, Reservation } from "./manager/memory-pool.js";
export {
  DEPS_PACKAGE,
  type InstalledDeps,
  NodeDepsInstaller,
  type NodeDepsOptions,
} from "./prepare/node-deps.js";
export { COMPILED_ENTRY, compileTypeScript } from "./prepare/typescript.js";
export {
  type InstalledPython,
  PipInstaller,
  type PipInstallerOptions,
} from "./python/pip-installer.js";
export {
  normalizePackageName,
  parseRequirements,
  type Requirement,
} from "./python/requirements.js";
export { PYTHON_COMMAND, pythonSpec } from "./python/spec.js";
export type { CodeLease, CodeStoreEvent } from "./registry/code-store.js";
export {
  DirectoryRegistry,
  type DirectoryRegistryOptions,
  type LambdaCode,
} from "./registry/directory-registry.js";
export { assertLambdaName } from "./registry/names.js";
export { extractTarGz, safePath } from "./registry/tar-extract.js";
export { nodeGuestRuntimeDir } from "./runtime-paths.js";
export { lambdaLimitMaxima } from "./sandbox-limits.js";
export {
  applyOverrides,
  defaultWorkerConfig,
  parseWorkerConfig,
  type WorkerConfig,
} from "./worker-config.js";
export { PythonForkPool, type PythonForkPoolOptions } from "./zygote/python-fork-pool.js";
export {
  DEFAULT_TREE,
  loadTree,
  parseTree,
  type TreeNode,
  type TreePackage,
} from "./zygote/tree.js";
export { type TakenSandbox, ZygotePool, type ZygotePoolOptions } from "./zygote/zygote-pool.js";
