import { InvalidLambdaNameError } from "../errors.js";

const NAME = /^[A-Za-z0-9._-]+$/;

/** Whether `name` is a safe lambda name. */
export function isValidLambdaName(name: string): boolean {
  return NAME.test(name) && name !== "." && name !== ".." && name.length <= 128;
}

/** Throws `OL_INVALID_LAMBDA_NAME` unless `name` is a safe lambda name. */
export function assertLambdaName(name: string): void {
  if (!isValidLambdaName(name)) {
    throw new InvalidLambdaNameError(
      `invalid lambda name ${JSON.stringify(name)}: use 1-128 of A-Z a-z 0-9 . _ - (not . or ..)`,
    );
  }
}
