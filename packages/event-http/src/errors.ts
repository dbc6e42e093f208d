import { defineOlError } from "@openlambda/sandbox-core";

export class UnauthorizedError extends defineOlError(
  "OL_UNAUTHORIZED",
  401,
  "An admin route was called without the worker's admin bearer token, or with a wrong one.",
) {}

export class BodyTooLargeError extends defineOlError(
  "OL_BODY_TOO_LARGE",
  413,
  "The request body is larger than the trigger's limit (by Content-Length or by the bytes streamed).",
) {}

export class RouteNotFoundError extends defineOlError(
  "OL_ROUTE_NOT_FOUND",
  404,
  "No route of the HTTP API matches the request's path.",
) {}

export class RouteMethodNotAllowedError extends defineOlError(
  "OL_ROUTE_METHOD_NOT_ALLOWED",
  405,
  "The route exists but does not take this HTTP method; the Allow header lists the ones it takes.",
) {
  /** The methods the route takes, for the `Allow` header. */
  allow = "";
}

export class RouteUnavailableError extends defineOlError(
  "OL_ROUTE_UNAVAILABLE",
  501,
  "The trigger was started without the component this route needs (a registry, or introspection).",
) {}

export class InternalError extends defineOlError(
  "OL_INTERNAL",
  500,
  "An unexpected error in the worker; the worker's log has the details.",
) {}

export class ListenFailedError extends defineOlError(
  "OL_LISTEN_FAILED",
  500,
  "The HTTP trigger could not listen on its host and port (address in use, no permission, unknown host).",
) {}

export class TriggerStateError extends defineOlError(
  "OL_TRIGGER_STATE",
  500,
  "A trigger was used in the wrong state: started twice, or asked for its address before start.",
) {}
