export type {
  InvokeRequest,
  InvokeResponse,
  Invoker,
  LambdaInstance,
  LambdaInstanceState,
} from "./contracts.js";
