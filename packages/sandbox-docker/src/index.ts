/** The backend's name, as chosen by `"sandbox": "docker"` in a worker's config. */
export const DOCKER_BACKEND_NAME = "docker";
