"""Ray behind lookup batch --engine ray: lookup actors and the token actor that keeps them
under one rate (the [ray] extra). Entry point: :func:`lookup.scale.ray.batch.run_ray`."""
