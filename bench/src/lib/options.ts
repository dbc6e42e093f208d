/** Knobs shared by every scenario; `--quick` shrinks them for development. */
export interface BenchOptions {
  /** Seconds of measured load per run (warm). */
  readonly durationS: number;
  /** Seconds of unmeasured load before each run (warm). */
  readonly warmupS: number;
  /** Interleaved rounds per (peer, connections) pair (warm). */
  readonly rounds: number;
  readonly connections: readonly number[];
  /** Load-generator threads (autocannon workers); 0 = the bench's own thread. */
  readonly clientThreads: number;
  /** Never-seen lambdas per cold series. */
  readonly coldN: number;
  /** Create+destroy cycles per churn series, and its time bound. */
  readonly churnCycles: number;
  readonly churnSeconds: number;
  /** Sandboxes created and paused for the memory figure (density). */
  readonly densitySandboxes: number;
  /** mem_pool_mb of the density worker, and how many distinct lambdas it is asked to serve. */
  readonly densityPoolMb: number;
  readonly densityLambdas: number;
  /** Write a CPU profile of our worker during the warm scenario. */
  readonly profile: boolean;
}

export const FULL: BenchOptions = {
  durationS: 3,
  warmupS: 1,
  rounds: 3,
  connections: [1, 32],
  clientThreads: 0,
  coldN: 30,
  churnCycles: 30,
  churnSeconds: 15,
  densitySandboxes: 10,
  densityPoolMb: 1024,
  densityLambdas: 24,
  profile: false,
};

export const QUICK: BenchOptions = {
  ...FULL,
  durationS: 2,
  warmupS: 0.5,
  rounds: 1,
  coldN: 5,
  churnCycles: 5,
  churnSeconds: 8,
  densitySandboxes: 3,
  densityPoolMb: 512,
  densityLambdas: 8,
};
