/* backoff: being written */
