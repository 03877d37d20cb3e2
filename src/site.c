/* site: being written */
