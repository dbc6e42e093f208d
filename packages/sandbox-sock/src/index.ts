/** The backend's name, as chosen by `"sandbox": "sock"` in a worker's config. */
export const SOCK_BACKEND_NAME = "sock";
