"""The launcher behind ``make run``: embedded servers, migrations, services, clean shutdown."""
