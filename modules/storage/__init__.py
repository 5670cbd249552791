"""The database: connections (embedded or DATABASE_URL), migrations, ad-hoc queries."""
