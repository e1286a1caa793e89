# Menus : accueil, langue, domaine, code postal. Phrases courtes et simples.

welcome = Bienvenue. Vous êtes sur le numéro gratuit pour les citoyens étrangers du Portale Integrazione Migranti.
language-guess = Français, tapez { $digit }.
language-option = Français, tapez { $digit }.
language-more = Pour d'autres langues, appuyez sur { $digit }.
area-menu = Pour les cours d'italien, appuyez sur 1. Pour le travail, appuyez sur 2. Pour le logement, appuyez sur 3. Pour la santé, appuyez sur 4. Pour les mineurs et les jeunes, appuyez sur 5. Pour la médiation interculturelle, appuyez sur 6. Pour des informations sur le portail, appuyez sur 7. Pour un conseiller, appuyez sur 0.
portal-info = Le Portale Integrazione Migranti présente les services pour les citoyens étrangers dans toute l'Italie. Adresse : integrazionemigranti point gov point it.
cap-ask = Tapez votre code postal italien, le CAP, à cinq chiffres. Pour passer, appuyez sur dièse.
cap-landline = Vous appelez de la région de { $province } ? Appuyez sur 1 pour oui, 2 pour non. Ou tapez votre code postal.
cap-invalid = Ce code postal est introuvable. Veuillez réessayer.
cap-placed = Très bien. Nous cherchons près de { $place }.
service-choice = Pour entendre les services les plus proches, appuyez sur 1. Pour parler à un conseiller, appuyez sur 2.
invalid-choice = Ce choix n'est pas valable.
goodbye = Merci de votre appel. Au revoir.
# Said by the HTTP adapters when a request cannot be processed: the caller is queued, never dropped.
technical-problem = Nous sommes désolés, il y a un problème technique. Veuillez patienter, un opérateur va vous répondre.
# The recording notice (after the welcome) and the confirmation of a refusal (key 9 during it).
recording-notice = Cet appel peut être enregistré pour la qualité du service. Si vous ne voulez pas être enregistré, appuyez sur 9.
recording-refused = D'accord. Cet appel ne sera pas enregistré.
