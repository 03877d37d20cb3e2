/* site_ctl: being written */
