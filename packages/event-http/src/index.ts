export {
  BodyTooLargeError,
  InternalError,
  ListenFailedError,
  RouteMethodNotAllowedError,
  RouteNotFoundError,
  RouteUnavailableError,
  TriggerStateError,
  UnauthorizedError,
} from "./errors.js";
export {
  DEFAULT_BODY_LIMIT_BYTES,
  DEFAULT_HTTP_HOST,
  DEFAULT_HTTP_PORT,
  DEFAULT_UPLOAD_LIMIT_BYTES,
  type HttpTrigger,
  type HttpTriggerAddress,
  type HttpTriggerOptions,
  httpTrigger,
  isValidLambdaName,
} from "./http-trigger.js";
export { PROMETHEUS_CONTENT_TYPE, renderPrometheus } from "./prometheus.js";
export {
  ROUTES,
  type RouteAuth,
  type RouteId,
  type RouteMetric,
  type RouteSpec,
} from "./routes.js";
export type { Trigger } from "./trigger.js";
