/* queue: being written */
